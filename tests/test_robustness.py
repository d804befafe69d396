"""Corruptions (shape, determinism, strength, published parameters), calibration/OOD metrics, end to end."""

import json

import numpy as np
import pytest
from conftest import make_image_folder
from scipy.ndimage import gaussian_filter

from clipscope.analysis.calibration import (
    auroc,
    expected_calibration_error,
    fpr_at_tpr,
    mcm_score,
    negative_log_likelihood,
    softmax,
)
from clipscope.errors import ClipscopeError
from clipscope.robustness import CORRUPTIONS, PARAMS, corrupt


def ssim(a, b):
    """Grayscale SSIM with a Gaussian window (sigma 1.5), constants of Wang et al. 2004."""
    a = a.astype(np.float64).mean(2)
    b = b.astype(np.float64).mean(2)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = gaussian_filter(a, 1.5), gaussian_filter(b, 1.5)
    saa = gaussian_filter(a * a, 1.5) - mu_a ** 2
    sbb = gaussian_filter(b * b, 1.5) - mu_b ** 2
    sab = gaussian_filter(a * b, 1.5) - mu_a * mu_b
    return float((((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))).mean())


@pytest.fixture(scope="module")
def image():
    """A textured 224 x 224 test image: smooth gradients plus edges and detail."""
    y, x = np.mgrid[0:224, 0:224] / 224.0
    r = 0.5 + 0.4 * np.sin(8 * x) * np.cos(5 * y)
    g = 0.5 + 0.4 * np.cos(11 * x * y)
    b = ((x * 10).astype(int) + (y * 10).astype(int)) % 2 * 0.6 + 0.2
    return (np.stack([r, g, b], 2) * 255).astype(np.uint8)


def test_the_fifteen_corruptions():
    assert CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                           "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                           "elastic_transform", "pixelate", "jpeg_compression")


def test_parameters_pinned_to_published_tables():
    """Hendrycks & Dietterich 2019, make_imagenet_c.py (hendrycks/robustness)."""
    assert PARAMS["gaussian_noise"] == [0.08, 0.12, 0.18, 0.26, 0.38]
    assert PARAMS["shot_noise"] == [60, 25, 12, 5, 3]
    assert PARAMS["impulse_noise"] == [0.03, 0.06, 0.09, 0.17, 0.27]
    assert PARAMS["defocus_blur"] == [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]
    assert PARAMS["glass_blur"] == [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
    assert PARAMS["motion_blur"] == [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]
    published_zoom = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
                      np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)]
    for ours, ref in zip(PARAMS["zoom_blur"], published_zoom):
        np.testing.assert_array_equal(ours, ref)
    assert PARAMS["snow"][4] == (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)
    assert PARAMS["frost"] == [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]
    assert PARAMS["fog"] == [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)]
    assert PARAMS["brightness"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert PARAMS["contrast"] == [0.4, 0.3, 0.2, 0.1, 0.05]
    assert PARAMS["elastic_transform"][0] == (488, 244 * 0.7, 244 * 0.1)
    assert PARAMS["pixelate"] == [0.6, 0.5, 0.4, 0.3, 0.25]
    assert PARAMS["jpeg_compression"] == [25, 18, 15, 10, 7]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_contract(image, name):
    small = image[:96, :80]
    out = corrupt(small, name, 3, seed=7)
    assert out.shape == small.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, corrupt(small, name, 3, seed=7))
    assert not np.array_equal(out, small)


RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
          "elastic_transform"}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_seed_changes_random_corruptions(image, name):
    a, b = corrupt(image[:64, :64], name, 2, seed=1), corrupt(image[:64, :64], name, 2, seed=2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_strength_grows_with_severity(image, name):
    scores = [np.mean([ssim(image, corrupt(image, name, s, seed=k)) for k in range(2)]) for s in range(1, 6)]
    if name == "elastic_transform":
        # The published table is two regimes: severities 1-2 a large-scale warp, 3-5 a small-scale
        # field that grows (alpha 12.2, 17.1, 29.3). SSIM follows the table, not the labels.
        assert scores[4] < scores[3] < scores[2], scores
    elif name == "snow":
        # The published snow table raises the flake threshold at severity 3 (0.5 -> 0.9), so
        # severity 3 has fewer flakes than 2; past that, strength grows again.
        assert scores[4] < scores[3] < scores[2] and scores[4] < scores[0], scores
    else:
        assert scores[4] < scores[0], scores
        assert all(b < a + 0.02 for a, b in zip(scores, scores[1:])), scores


def test_brightness_and_contrast_closed_forms():
    img = np.full((4, 4, 3), [100, 50, 0], np.uint8)
    out = corrupt(img, "brightness", 1).astype(float)
    # V rises by 0.1 (25.5 levels); hue and saturation kept: channels scale by V'/V
    np.testing.assert_allclose(out[0, 0], np.round(np.array([100, 50, 0]) * (100 / 255 + 0.1) / (100 / 255)), atol=1)
    flat = np.full((4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(corrupt(flat, "contrast", 5), flat)  # a flat image has no contrast to lose
    with pytest.raises(ClipscopeError, match="unknown corruption"):
        corrupt(img, "rain", 1)
    with pytest.raises(ClipscopeError, match="severity"):
        corrupt(img, "fog", 6)


def test_ece_and_nll_hand_computed():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    ece, table = expected_calibration_error(probs, labels, n_bins=15)
    # confidences 0.9, 0.8, 0.7, 0.55 fall in four different bins: |acc - conf| = 0.1, 0.8, 0.3, 0.55
    assert ece == pytest.approx((0.1 + 0.8 + 0.3 + 0.55) / 4)
    assert sum(r["count"] for r in table) == 4 and len(table) == 15
    assert negative_log_likelihood(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.7, 0.45])))
    # 0.95 and 0.97 share the last bin (14/15, 1]: one right, one wrong -> |0.5 - 0.96|
    same_bin = np.array([[0.95, 0.05], [0.97, 0.03]])
    assert expected_calibration_error(same_bin, np.array([0, 1]))[0] == pytest.approx(abs(0.5 - 0.96))


def test_auroc_and_fpr95_against_sklearn_and_hand():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(1, 1, 500), rng.normal(0, 1, 400)
    y = np.r_[np.ones(500), np.zeros(400)]
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(y, np.r_[id_s, ood_s]))
    # FPR95 by hand: threshold at the 25th-highest-of-500 ID score keeps 95% of ID
    thr = np.sort(id_s)[::-1][int(np.ceil(0.95 * 500)) - 1]
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(np.mean(ood_s >= thr))
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert fpr_at_tpr(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 0.0


def test_mcm_score_definition():
    img = np.array([[1.0, 0.0]])
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert mcm_score(img, classes)[0] == pytest.approx(np.e / (np.e + 1))
    assert softmax(np.array([[0.0, 0.0]]))[0, 0] == 0.5


def test_robustness_end_to_end(run_cli, tmp_path):
    from clipscope.report import validate_report

    folder = make_image_folder(tmp_path / "imgs", classes=("ant", "bee", "cow"), per_class=4, broken=False)
    ood = make_image_folder(tmp_path / "ood", classes=("x",), per_class=5, broken=False)
    tmpl = tmp_path / "templates.txt"
    tmpl.write_text("a photo of a {c}.\na drawing of a {c}.\n")
    code, out, err = run_cli("robustness", "--model", "clipscope-tiny", "--pretrained", "none", "--workers", "0",
                             "--data", f"folder:{folder}", "--ood-data", f"folder:{ood}", "--templates", tmpl,
                             "--corruptions", "gaussian_noise,contrast", "--severities", "1,5", "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "robustness.json").read_text())
    validate_report(rep)
    assert rep["model"]["pretrained"] == "none"
    for key in ("accuracy_clean", "mean_corruption_accuracy", "relative_drop", "ece", "nll", "ood_auroc", "ood_fpr95",
                "prompt_accuracy_std"):
        assert key in rep["metrics"]
    rows = rep["tables"]["corruptions"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("gaussian_noise", 1), ("gaussian_noise", 5),
                                                                 ("contrast", 1), ("contrast", 5)]
    assert rep["metrics"]["mean_corruption_accuracy"]["value"] == pytest.approx(np.mean([r["accuracy"] for r in rows]))
    per_image = rep["tables"]["per_image_drift"]  # the mean over images of the mean over cells = the cells' mean
    assert {r["id"] for r in per_image} == {f"{c}/{k}.jpg" for c in ("ant", "bee", "cow") for k in range(4)}
    assert np.mean([r["drift"] for r in per_image]) == pytest.approx(np.mean([r["drift"] for r in rows]))
    for name in rep["artifacts"].values():
        assert (tmp_path / "run" / name).stat().st_size > 1000
    code, _, err = run_cli("robustness", "--model", "clipscope-tiny", "--pretrained", "none", "--data", "probes:4",
                           "--corruptions", "rain", "--out", tmp_path / "r2")
    assert code == 1 and "unknown corruption" in err


def test_mce_against_a_baseline_by_hand():
    from clipscope.robustness.mce import corruption_errors

    table = [{"corruption": "fog", "severity": s, "accuracy": a} for s, a in ((1, 0.8), (2, 0.6))]
    table += [{"corruption": "snow", "severity": 1, "accuracy": 0.5}]
    base = [{"corruption": "fog", "severity": s, "accuracy": a} for s, a in ((1, 0.7), (2, 0.5), (3, 0.1))]
    rows, mce, rel = corruption_errors(table, 0.9, baseline_table=base, baseline_clean_accuracy=0.8)
    assert [r["corruption"] for r in rows] == ["fog"]  # snow has no baseline cell
    assert rows[0]["ce"] == pytest.approx(100 * (0.2 + 0.4) / (0.3 + 0.5))
    assert rows[0]["relative_ce"] == pytest.approx(100 * ((0.2 - 0.1) + (0.4 - 0.1)) / ((0.3 - 0.2) + (0.5 - 0.2)))
    assert mce == pytest.approx(rows[0]["ce"]) and rel == pytest.approx(rows[0]["relative_ce"])


def test_relative_ce_is_undefined_when_the_baseline_did_not_degrade():
    import math
    import warnings

    from clipscope.robustness.mce import corruption_errors

    table = [{"corruption": "fog", "severity": 1, "accuracy": 0.6}]
    base = [{"corruption": "fog", "severity": 1, "accuracy": 0.8}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning, no inf
        rows, mce, rel = corruption_errors(table, 0.9, baseline_table=base, baseline_clean_accuracy=0.8)
    assert rows[0]["ce"] == pytest.approx(100 * 0.4 / 0.2) and mce == pytest.approx(200.0)
    assert math.isnan(rows[0]["relative_ce"]) and math.isnan(rel)


def test_mce_against_alexnet_published_errors_by_hand():
    """Gaussian noise at accuracies 0.5 .. 0.1 (mean error 0.7) against AlexNet's 88.6428% mean
    error and 43.5% clean error; a corruption without all five severities is left out."""
    from clipscope.robustness.mce import corruption_errors, is_imagenet_val

    table = [{"corruption": "gaussian_noise", "severity": s, "accuracy": a}
             for s, a in zip(range(1, 6), (0.5, 0.4, 0.3, 0.2, 0.1))]
    table += [{"corruption": "fog", "severity": 1, "accuracy": 0.9}]
    rows, mce, rel = corruption_errors(table, 0.75, alexnet=True)
    assert [r["corruption"] for r in rows] == ["gaussian_noise"]
    assert mce == pytest.approx(100 * 0.7 / 0.886428)
    assert rel == pytest.approx(100 * (0.7 - 0.25) / (0.886428 - 0.435))
    from types import SimpleNamespace as NS

    assert is_imagenet_val(NS(class_naming="imagenet", classnames=["x"] * 1000))
    assert not is_imagenet_val(NS(class_naming="imagenet", classnames=["x"] * 999))
    assert not is_imagenet_val(NS(class_naming="folders", classnames=["cat"] * 1000))


def test_robustness_with_a_baseline_report(run_cli, tmp_path):
    import json

    common = ["--data", "probes:24", "--corruptions", "contrast", "--severities", "1,2", "--max-images", "24",
              "--no-plots", "-q"]
    code, _, err = run_cli("robustness", "--model", "clipscope-tiny", "--pretrained", "none", *common,
                           "--out", tmp_path / "base")
    assert code == 0, err
    code, _, err = run_cli("robustness", "--model", "clipscope-tiny", *common, "--baseline",
                           tmp_path / "base" / "robustness.json", "--out", tmp_path / "new")
    assert code == 0, err
    base = json.loads((tmp_path / "base" / "robustness.json").read_text())
    new = json.loads((tmp_path / "new" / "robustness.json").read_text())
    e = [1 - r["accuracy"] for r in new["tables"]["corruptions"]]
    b = [1 - r["accuracy"] for r in base["tables"]["corruptions"]]
    assert new["metrics"]["mce"]["value"] == pytest.approx(100 * sum(e) / sum(b))
    assert "mce" not in base["metrics"]
    code, _, err = run_cli("robustness", "--model", "clipscope-tiny", *common, "--baseline",
                           tmp_path / "new" / "no-such.json", "--out", tmp_path / "x")
    assert code == 1 and "no report" in err


def test_zero_shot_accuracy_is_the_models_own_preprocessing(tmp_path):
    """accuracy_zero_shot transcribes CLIP_benchmark (open the image, the model's transform, argmax over
    the template-ensembled classifier); accuracy_clean is the ImageNet-C view (256/224 crop first);
    the predictions table carries both per image."""
    import torch
    from PIL import Image

    from clipscope.data import open_source
    from clipscope.models import load_encoder
    from clipscope.tasks.robustness import class_embeddings, evaluate

    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for name in ("ant", "bee", "cow"):
        for i in range(4):  # non-square, larger than 256: the two protocols see different pixels
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (300 + 20 * i, 420, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    source = open_source(f"folder:{folder}")
    encoder = load_encoder("clipscope-tiny", "none", device="cpu")
    templates = ["a photo of a {c}.", "a drawing of a {c}."]
    seen = []
    embed = encoder.embed_images
    encoder.embed_images = lambda x: seen.append(x.clone()) or embed(x)
    result = evaluate(encoder, source, corruptions=["contrast"], severities=[1], templates=templates,
                      max_images=None, progress=False)
    classes, _ = class_embeddings(encoder, source.classnames, templates)
    with torch.no_grad():
        pixels = torch.stack([encoder.preprocess(Image.open(folder / i).convert("RGB")) for i in source.image_ids])
        feats = torch.nn.functional.normalize(encoder.model.encode_image(pixels).float(), dim=-1).numpy()
    expected = (feats @ classes.T).argmax(1)
    assert sum(torch.equal(x, pixels) for x in seen) == 1  # the zero-shot batch: these pixels exactly
    crops = next(x for x in seen if x.shape == pixels.shape and not torch.equal(x, pixels))
    assert (crops - pixels).abs().max() > 0.1  # and the ImageNet-C view differs from it
    rows = result.tables["predictions"]
    assert [r["id"] for r in rows] == list(source.image_ids)
    assert [r["zero_shot"] for r in rows] == [source.classnames[k] for k in expected]
    labels = [r["label"] for r in rows]
    acc = np.mean([p == y for p, y in zip((r["zero_shot"] for r in rows), labels)])
    assert result.metrics["accuracy_zero_shot"]["value"] == pytest.approx(acc)
    clean = np.mean([r["clean"] == r["label"] for r in rows])
    assert result.metrics["accuracy_clean"]["value"] == pytest.approx(clean)
    cell = np.mean([r["contrast/1"] == r["label"] for r in rows])
    assert result.tables["corruptions"][0]["accuracy"] == pytest.approx(cell)
    assert "2 template(s)" in result.metrics["accuracy_zero_shot"]["detail"]
