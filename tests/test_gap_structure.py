"""The gap's structure (#22): the paired difference as noise (MacCap), subregion crops, and the
direction between two groups (RAVE)."""

from __future__ import annotations

import numpy as np
import pytest

import clipscope
from clipscope.analysis import noise_model as nm
from clipscope.linalg import l2_normalize


def test_gaussian_differences_pass_the_normality_test_at_the_stated_rate():
    rng = np.random.default_rng(0)
    D = rng.normal(0.0, 0.05, size=(4000, 400))
    fit = nm.difference_moments(D, alpha=0.05)
    # 400 independent tests at level 0.05: the share passing is Binomial(400, 0.95)/400 (sd 0.011)
    assert 0.95 - 4 * 0.011 <= fit["gaussian_share"] <= 0.95 + 4 * 0.011
    assert fit["sigma"] == pytest.approx(0.05, rel=0.01)
    assert abs(np.mean(fit["excess_kurtosis"])) < 0.05 and abs(np.mean(fit["skew"])) < 0.02


def test_laplace_differences_do_not():
    rng = np.random.default_rng(1)
    D = rng.laplace(0.0, 0.05, size=(4000, 400))
    fit = nm.difference_moments(D, alpha=0.05)
    assert fit["gaussian_share"] < 0.01
    assert np.mean(fit["excess_kurtosis"]) == pytest.approx(3.0, abs=0.3)  # a Laplace's excess kurtosis is 3
    assert fit["sigma"] == pytest.approx(0.05 * np.sqrt(2), rel=0.02)  # its sd is b * sqrt(2)


def _planted_pairs(n=3000, d=64, sigma=0.02, seed=2):
    """1:1 pairs whose differences are a fixed gap plus Gaussian noise (before normalisation)."""
    rng = np.random.default_rng(seed)
    T = l2_normalize(rng.normal(size=(n, d)))
    gap = np.zeros(d)
    gap[0] = 0.3
    I = l2_normalize(T + gap + rng.normal(0, sigma, size=(n, d)))
    return I.astype(np.float32), T.astype(np.float32)


def test_noise_model_in_the_gap_report_on_three_layouts():
    I, T = _planted_pairs()
    # 1:1, several captions per image (each image paired with 3 texts), many images per text (10 classes)
    layouts = {
        "1:1": (I, T, None),
        "coco": (I[:1000], T[:3000], np.stack([np.repeat(np.arange(1000), 3), np.arange(3000)], 1)),
        "classes": (I, T[:10], np.stack([np.arange(3000), np.arange(3000) % 10], 1)),
    }
    for name, (imgs, txts, pairs) in layouts.items():
        cache = clipscope.from_arrays(imgs, txts, pairs)
        r = clipscope.run("gap", cache, noise_model=True, noise_max_pairs=2000, plots=False)
        m = {k: v.value for k, v in r.metrics.items()}
        assert m["noise_sigma"] > 0 and 0 <= m["noise_gaussian_share"] <= 1, name
        rows = r.tables["noise_model"]
        assert len(rows) == 64 and all(0 <= row["normaltest_p"] <= 1 for row in rows), name
        n_pairs = len(imgs) if pairs is None else len(pairs)
        assert r.config["noise_max_pairs"] == 2000 and f"{min(n_pairs, 2000)} pairs" in \
            r.metrics["noise_sigma"].description, name
        # sigma is the root mean per-dimension variance of x - t - g on the sample (transcribed)
        Ip = imgs if pairs is None else imgs[pairs[:, 0]]
        Tp = txts if pairs is None else txts[pairs[:, 1]]
        idx = nm.sample_pairs(len(Ip), 2000, 0)
        g = imgs.astype(np.float64).mean(0) - txts.astype(np.float64).mean(0)
        D = Ip[idx].astype(np.float64) - Tp[idx] - g
        assert m["noise_sigma"] == pytest.approx(np.sqrt(np.mean(D.var(axis=0, ddof=1))), rel=1e-6), name
        assert m["noise_variance"] == pytest.approx(m["noise_sigma"] ** 2, rel=1e-12), name  # sigma^2 beside sigma
        # MacCap's noise_injection at its published --noise_variance 0.016, transcribed: a variance, so
        # x + randn * sqrt(0.016), renormalised (here on the same draws as clipscope's)
        x, t = Ip[idx].astype(np.float32), Tp[idx].astype(np.float32)
        z = np.random.default_rng([0, 12]).normal(0.0, 1.0, size=t.shape)
        noisy = t + (z * np.sqrt(0.016)).astype(np.float32)
        noisy = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        want = float(np.mean(np.sum(x.astype(np.float64) * noisy, axis=1)))
        assert m["noisy_paired_cosine_maccap"] == pytest.approx(want, abs=2e-6), name


def test_noise_injection_narrows_the_gap_it_models():
    """Texts that are images minus a gap minus Gaussian noise: adding noise of the fitted sigma
    to the texts makes them as spread as the images, and the paired cosine drops."""
    I, T = _planted_pairs(sigma=0.05)
    r = clipscope.run("gap", clipscope.from_arrays(I, T), noise_model=True, plots=False)
    inj = {row["metric"]: row for row in r.tables["noise_injection"]}
    assert inj["paired_cosine"]["noisy_text"] < inj["paired_cosine"]["text"]
    assert r.metrics["noisy_paired_cosine"].value == inj["paired_cosine"]["noisy_text"]
    assert 0.5 <= inj["linear_separability"]["noisy_text"] <= 1.0


# ------------------------------------------------------------------ direction (RAVE)

def _groups(n=400, d=32, seed=3, shift=0.15):
    """Two image groups around a common centre, offset along a planted unit direction v."""
    rng = np.random.default_rng(seed)
    centre = l2_normalize(rng.normal(size=(1, d)))[0]
    v = rng.normal(size=d)
    v = v - (v @ centre) * centre  # tangent at the centre: normalising moves both groups alike
    v /= np.linalg.norm(v)
    A = l2_normalize(centre + shift * v + 0.05 * rng.normal(size=(n, d)))
    B = l2_normalize(centre - shift * v + 0.05 * rng.normal(size=(n, d)))
    return A.astype(np.float32), B.astype(np.float32), v


def rave_reference(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """A transcription of MACderRu/RAVE train_rave.py (the residual vector from the embeddings
    of the negative group to the positive group's, each embedding already L2-normalised)."""
    vector_pos = np.mean(pos, axis=0)
    vector_pos = vector_pos / np.linalg.norm(vector_pos)
    vector_neg = np.mean(neg, axis=0)
    vector_neg = vector_neg / np.linalg.norm(vector_neg)
    residual_vector = vector_pos - vector_neg
    return residual_vector / np.linalg.norm(residual_vector)


def test_the_direction_is_raves_when_the_groups_differ_in_spread():
    """With a tight group and a spread one, RAVE's normalised-means direction and the raw mean
    difference part ways; clipscope follows RAVE (cosine 1 with the transcription)."""
    from clipscope.analysis.direction import direction_stats

    rng = np.random.default_rng(11)
    d = 32
    a_dir, b_dir = l2_normalize(rng.normal(size=(2, d)))
    A = l2_normalize(a_dir + 0.3 * rng.normal(size=(500, d)))
    B = l2_normalize(b_dir + 1.2 * rng.normal(size=(500, d)))
    st = direction_stats(A, B)
    ref = rave_reference(A.astype(np.float64), B.astype(np.float64))
    np.testing.assert_allclose(st["vector"], ref, atol=1e-12)
    raw = A.mean(0) - B.mean(0)
    assert float(raw @ ref / np.linalg.norm(raw)) < 0.99, "the raw difference is another vector here"
    ma, mb = A.astype(np.float64).mean(0), B.astype(np.float64).mean(0)
    ua, ub = ma / np.linalg.norm(ma), mb / np.linalg.norm(mb)
    assert st["angle"] == pytest.approx(np.degrees(np.arccos(ua @ ub)), abs=1e-6)


def test_degenerate_groups_are_refused_or_marked(run_cli, tmp_path):
    """Two identical prompt sets have no direction (refused; nothing saved); a group of one row
    gets no AUROC (it would be 1.0 by construction) and says why (#28)."""
    cache = tmp_path / "c.h5"
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--data", "probes:48", "--out", cache, "-q")
    assert code == 0, err
    code, _, err = run_cli("direction", cache, "--a", "text:a red shape", "--b", "text:a red shape",
                           "--out", tmp_path / "same")
    assert code == 1 and "no direction" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "same" / "direction_text.npy").exists()
    code, out, err = run_cli("direction", cache, "--a", "text:a red shape", "--b", "text:a blue shape",
                             "--out", tmp_path / "one")
    assert code == 0, err
    import json

    rep = json.loads((tmp_path / "one" / "direction.json").read_text())
    assert rep["metrics"]["direction_auroc_text"]["value"] is None
    assert any("single text row" in n for n in rep["notes"])
    saved = np.load(tmp_path / "one" / "direction_text.npy")
    assert np.linalg.norm(saved) == pytest.approx(1.0, abs=1e-5)


def test_a_planted_direction_is_recovered_on_three_layouts():
    A, B, v = _groups()
    n = len(A)
    I = np.concatenate([A, B])
    labels = np.repeat([0, 1], n)
    rng = np.random.default_rng(4)
    Tc = l2_normalize(I + 0.05 * rng.normal(size=I.shape)).astype(np.float32)  # a noisy caption per image
    layouts = {
        "1:1": (Tc, None),
        "coco": (np.repeat(Tc, 3, axis=0), np.stack([np.repeat(np.arange(2 * n), 3), np.arange(6 * n)], 1)),
        "classes": (l2_normalize(np.stack([A.mean(0), B.mean(0)])).astype(np.float32),
                    np.stack([np.arange(2 * n), labels], 1)),
    }
    for name, (T, pairs) in layouts.items():
        cache = clipscope.from_arrays(I, T, pairs, image_labels=labels, classnames=["lit", "dark"])
        r = clipscope.run("direction", cache, a="class:lit", b="label:1", plots=False)
        got = np.asarray(r.tables["direction_image"])
        assert float(got @ v / np.linalg.norm(got)) > 0.99, name
        np.testing.assert_allclose(got, rave_reference(A, B), atol=1e-6)
        assert r.metrics["direction_auroc_image"].value == 1.0, name
        lo, hi = r.metrics["direction_mean_distance_image"].ci95
        assert lo <= r.metrics["direction_mean_distance_image"].value <= hi, name
        want = np.linalg.norm(A.astype(np.float64).mean(0) - B.astype(np.float64).mean(0))
        assert r.metrics["direction_mean_distance_image"].extra["plug_in"] == pytest.approx(want, rel=1e-6), name
        # texts paired with each group: 1 text per class in the class-prompt layout
        assert r.config["a"] == "class:lit"
        if name == "classes":  # one class prompt per group: no AUROC to speak of
            assert r.metrics["direction_auroc_text"].value is None, name
        else:
            assert r.metrics["direction_auroc_text"].value > 0.99, name
        far = r.tables["furthest_image"]
        assert far[0]["group"] == "a" and far[-1]["group"] == "b" and far[0]["score"] > far[-1]["score"], name


def test_the_norm_interval_has_near_nominal_coverage():
    """300 simulated pairs of Gaussian groups with a known mean difference (norm 0.1)."""
    from clipscope.analysis.direction import direction_stats

    rng = np.random.default_rng(5)
    d, n, true = 16, 60, 0.1
    mu = np.zeros(d)
    mu[0] = true
    hits = 0
    for _ in range(300):
        A = rng.normal(size=(n, d)) * 0.2 + mu
        B = rng.normal(size=(n, d)) * 0.2
        st = direction_stats(A.astype(np.float32), B.astype(np.float32))
        hits += st["ci95"][0] <= true <= st["ci95"][1]
    assert 0.91 <= hits / 300 <= 0.985


def test_prompt_sets_text_direction_and_saved_npy(run_cli, tmp_path):
    cache = tmp_path / "c.h5"
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--data", "probes:96", "--out", cache, "-q")
    assert code == 0, err
    with clipscope.open_cache(cache) as c:
        names = c.classnames
    code, out, err = run_cli("direction", cache, "--a", f"class:{names[0]}", "--b", f"class:{names[1]}",
                             "--text-a", f"a photo of a {names[0]}", "--text-b", f"a photo of a {names[1]}",
                             "--out", tmp_path / "d")
    assert code == 0, err
    import json

    rep = json.loads((tmp_path / "d" / "direction.json").read_text())
    saved = np.load(tmp_path / "d" / "direction_image.npy")
    assert saved.dtype == np.float32 and np.array_equal(saved, np.asarray(rep["tables"]["direction_image"], np.float32))
    assert -1 <= rep["metrics"]["direction_text_cosine_image"]["value"] <= 1
    # a prompt set as a group: the text direction between two prompt sets
    code, out, err = run_cli("direction", cache, "--a", "text:a red circle|a photo of a red circle",
                             "--b", "text:a blue square", "--json", "-")
    assert code == 0, err
    rep = json.loads(out)
    assert "direction_angle_text" in rep["metrics"] and "direction_angle_image" not in rep["metrics"]


def test_direction_errors(run_cli, tmp_path):
    A, B, _ = _groups(n=20)
    from clipscope.cache import write_cache

    path = tmp_path / "g.h5"
    I = np.concatenate([A, B])
    write_cache(path, attrs={"model": "x", "pretrained": "imported", "embed_dim": I.shape[1], "source": "import"},
                image_embeddings=I, image_ids=[f"i{k}" for k in range(len(I))],
                image_labels=np.repeat([0, 1], 20), classnames=["lit", "dark"])
    ids = tmp_path / "ids.txt"
    ids.write_text("i0\ni1\n")
    cases = [
        (("--a", "label:0", "--b", "ids:" + str(ids)), "share 2 image row"),
        (("--a", "class:sunny", "--b", "label:1"), "no class 'sunny'"),
        (("--a", "colour:red", "--b", "label:1"), "use label:N, class:NAME"),
        (("--a", "label:0", "--b", "text:a dark photo"), "encoded with the cache's model x"),
    ]
    for args, message in cases:
        code, out, err = run_cli("direction", path, *args, "--json", "-")
        assert code in (1, 2) and message in err and len(err.strip().splitlines()) == 1, (args, err)


# ------------------------------------------------------------------ subregions (MacCap)

def _composites(n: int, seed: int, named_from=None):
    """n 2x2 composites of probe objects of four different classes, and per composite the class
    names of its quadrants and the quadrant a caption names (drawn from ``named_from`` classes
    when given, so that many composites share one named class)."""
    from PIL import Image

    from clipscope.data import probes

    rng = np.random.default_rng(seed)
    scenes = [probes.scene(0, i) for i in range(400)]
    by_class = {}
    for i, s in enumerate(scenes):
        by_class.setdefault(s.label, []).append(i)
    classes = sorted(by_class)
    out = []
    for k in range(n):
        if named_from is None:
            picked = list(rng.choice(classes, 4, replace=False))
            named = int(rng.integers(4))
        else:
            first = int(rng.choice(named_from))
            picked = [first] + list(rng.choice([c for c in classes if c != first], 3, replace=False))
            order = rng.permutation(4)  # the named object in a random quadrant
            picked, named = [picked[j] for j in order], int(np.flatnonzero(order == 0)[0])
        tiles = [probes.render(scenes[by_class[c][k % len(by_class[c])]], seed=0, index=k) for c in picked]
        im = Image.new("RGB", (256, 256))
        for q, t in enumerate(tiles):
            im.paste(t.resize((128, 128)), ((q % 2) * 128, (q // 2) * 128))
        out.append((im, [probes.CLASSNAMES[c] for c in picked], named))
    return out


def test_a_caption_naming_one_quadrant_is_closer_to_that_crop(run_cli, tmp_path):
    """2x2 composites of four probe objects of different classes; each caption names one
    quadrant's object. The quadrant crop beats the whole image; a rerun reads the crops back."""
    folder = tmp_path / "composites"
    folder.mkdir()
    for k, (im, names, named) in enumerate(_composites(24, 6)):
        im.save(folder / f"c{k:02d}.png")
        (folder / f"c{k:02d}.txt").write_text(f"a photo of a {names[named]}.")
    cache = tmp_path / "c.h5"
    assert run_cli("extract", "--model", "clipscope-tiny", "--data", f"images:{folder}", "--out", cache, "-q")[0] == 0
    code, out, err = run_cli("gap", cache, "--subregions", "--json", "-")
    assert code == 0, err
    import json

    rep = json.loads(out)
    win = rep["metrics"]["subregion_win_share"]
    assert win["value"] >= 0.8 and rep["metrics"]["subregion_mean_gain"]["value"] > 0
    assert win["ci95"][0] <= win["value"] <= win["ci95"][1]
    half = next(r for r in rep["tables"]["subregions"] if r["scale"] == 0.5)
    assert half["win_share"] >= 0.8  # the quadrant crops carry the win
    with clipscope.open_cache(cache) as c:
        assert c["image/crops/embeddings"].shape == (24, 8, c.image_embeddings.shape[1])
    import jsonschema

    from clipscope.cache import layout
    from clipscope.report import schema

    doc = layout(cache)
    assert "image/crops/embeddings" in doc["datasets"]
    jsonschema.Draft202012Validator(schema("cache")).validate(doc)
    code, out, err = run_cli("gap", cache, "--subregions", "--json", "-")
    again = json.loads(out)
    assert again["metrics"]["subregion_win_share"]["value"] == win["value"]
    assert any("read from the cache" in n for n in again["notes"])


def test_subregions_with_several_captions_per_image_and_class_prompts(run_cli, tmp_path):
    """COCO-like: two captions per composite, each naming a different quadrant. Class prompts:
    composites in class folders named by one quadrant's class, so many images share a text."""
    import json

    coco = tmp_path / "coco"
    coco.mkdir()
    lines = ["image,caption"]
    for k, (im, names, named) in enumerate(_composites(12, 7)):
        im.save(coco / f"c{k:02d}.png")
        other = (named + 1 + k % 3) % 4
        lines += [f"c{k:02d}.png,a photo of a {names[named]}.", f"c{k:02d}.png,a photo of a {names[other]}."]
    (coco / "captions.csv").write_text("\n".join(lines) + "\n")
    classes = tmp_path / "classes"
    for k, (im, names, named) in enumerate(_composites(18, 8, named_from=[0, 5, 10])):
        d = classes / names[named].replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        im.save(d / f"c{k:02d}.png")
    for name, spec, n_pairs in (("coco", f"captions:{coco / 'captions.csv'}", 24), ("classes", f"folder:{classes}", 18)):
        cache = tmp_path / f"{name}.h5"
        assert run_cli("extract", "--model", "clipscope-tiny", "--data", spec, "--out", cache, "-q")[0] == 0
        code, out, err = run_cli("gap", cache, "--subregions", "--json", "-")
        assert code == 0, (name, err)
        m = json.loads(out)["metrics"]
        assert m["subregion_win_share"]["n"] == n_pairs, name
        assert m["subregion_win_share"]["value"] >= 0.8 and m["subregion_mean_gain"]["value"] > 0, name
        with clipscope.open_cache(cache) as c:
            assert c.n_texts == (24 if name == "coco" else 3), name  # class prompts: 18 images share 3 texts


def test_crop_boxes_are_seeded_and_inside_the_image():
    from clipscope.analysis.subregions import crop_boxes

    b = crop_boxes(3, 0)
    assert b.shape == (8, 4) and (b >= 0).all() and (b <= 1 + 1e-12).all()
    assert np.array_equal(b, crop_boxes(3, 0)) and not np.array_equal(b, crop_boxes(4, 0))
    assert np.allclose(b[:4, 2] - b[:4, 0], 0.5) and np.allclose(b[4:, 2] - b[4:, 0], 0.75)
