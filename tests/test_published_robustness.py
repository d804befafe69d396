"""Robustness on the published ImageNet sets (#21): class names and templates for WordNet-id
folders, each set's loader and class subset, ImageNet-C on disk and the mCE arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipscope
from clipscope.data import imagenet as inet
from clipscope.data import open_source
from clipscope.errors import ClipscopeError

R3 = inet.subset_wnids("imagenet-r")[:3]
A3 = inet.subset_wnids("imagenet-a")[:3]


def _image(path: Path, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(path, quality=90)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Each published layout with a few real WordNet ids and generated images (2 per class)."""
    root = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(0)
    for k in range(2):
        for w in R3:
            _image(root / "val" / w / f"{k}.JPEG", rng)
            _image(root / "sketch" / w / f"{k}.JPEG", rng)
            _image(root / "r" / w / f"{k}.jpg", rng)
            _image(root / "v2" / str(inet.wnids().index(w)) / f"{k}.jpeg", rng)
            for c in ("gaussian_noise", "fog"):
                for s in range(1, 6):
                    _image(root / "c" / c / str(s) / w / f"{k}.JPEG", rng)
            _image(root / "c" / "speckle_noise" / "3" / w / f"{k}.JPEG", rng)  # an extra, partial corruption
        for w in A3:
            _image(root / "a" / w / f"{k}.jpg", rng)
    _image(root / "tench" / "n01440764" / "0.jpg", rng)  # an ImageNet class outside ImageNet-R's 200
    return root


def test_wordnet_folders_get_imagenet_names_and_the_80_templates(sets, tmp_path):
    src = open_source(f"folder:{sets / 'val'}")
    assert src.class_naming == "imagenet"
    assert src.classnames == inet.classnames_of(R3)
    assert src.texts[0] == f"a photo of a {src.classnames[0]}." and "n0" not in " ".join(src.texts)
    assert inet.wnids()[0] == "n01440764" and inet.classnames_of(["n01440764"]) == ["tench"]
    rep = clipscope.run("robustness", model="clipscope-tiny", data=f"folder:{sets / 'val'}", corruptions="fog",
                        severities="1", progress=False, plots=False)
    assert rep.config["template_set"] == "openai" and len(rep.config["templates"]) == 80
    assert rep.config["class_names"] == "imagenet"
    other = tmp_path / "other"
    for w in ("cat", "hot_dog"):
        _image(other / w / "0.jpg", np.random.default_rng(1))
    assert open_source(f"folder:{other}").classnames == ["cat", "hot dog"]


def test_classnames_file_json_and_text(sets, tmp_path):
    j = tmp_path / "names.json"
    j.write_text(json.dumps(dict(zip(R3, ("fish one", "fish two", "fish three")))))
    assert open_source(f"folder:{sets / 'val'}", classnames=str(j)).classnames == ["fish one", "fish two", "fish three"]
    t = tmp_path / "names.txt"
    t.write_text("".join(f"{w} name {k}\n" for k, w in enumerate(R3[:2])))
    with pytest.raises(ClipscopeError, match=f"no name for folder.*{R3[2]}"):
        open_source(f"folder:{sets / 'val'}", classnames=str(t))
    with pytest.raises(ClipscopeError, match="folder: data"):
        open_source("probes:4", classnames=str(t))


def test_templates_choices(tmp_path):
    from clipscope.tasks.robustness import read_templates

    assert read_templates("simple")[0] == inet.templates("simple") and len(inet.templates("simple")) == 7
    assert read_templates(None, imagenet=False) == (["a photo of a {c}."], "default")
    f = tmp_path / "t.txt"
    f.write_text("art of a {c}.\n")
    assert read_templates(str(f))[0] == ["art of a {c}."]
    with pytest.raises(ClipscopeError, match="openai, simple or a file"):
        read_templates(str(tmp_path / "missing.txt"))


def test_each_layout_and_the_class_subsets(sets):
    paths, ids = inet.class_folder_set(sets / "v2", "imagenet-v2")
    assert sorted(set(ids)) == sorted(R3) and len(paths) == 6  # numeric folders mapped to WordNet ids
    assert len(inet.subset_wnids("imagenet-r")) == 200 == len(inet.subset_wnids("imagenet-a"))
    assert inet.subset_wnids("imagenet-r") != inet.subset_wnids("imagenet-a")
    assert "n01440764" not in inet.subset_wnids("imagenet-r")
    with pytest.raises(ClipscopeError, match="not one of imagenet-r's 200 classes"):
        inet.class_folder_set(sets / "tench", "imagenet-r")
    cells, ignored = inet.imagenet_c_cells(sets / "c")
    assert len(cells) == 11 and ("speckle_noise", 3) in cells and ignored == []
    with pytest.raises(ClipscopeError, match="no such folder"):
        inet.imagenet_c_cells(sets / "nowhere")


def test_published_run_restricts_logits_to_the_subset(sets):
    """accuracy_imagenet_r equals the rule transcribed: argmax over R's 200 classes only."""
    import torch

    from clipscope.data import open_image_file
    from clipscope.linalg import l2_normalize
    from clipscope.models import load_encoder
    from clipscope.tasks.robustness import class_embeddings

    names = ("imagenet", "imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a", "imagenet-c")
    dirs = ("val", "v2", "sketch", "r", "a", "c")
    rep = clipscope.run("robustness", model="clipscope-tiny", templates="simple", progress=False, plots=False,
                        benchmark=[f"{n}:{sets / d}" for n, d in zip(names, dirs)])
    m = {k: v.value for k, v in rep.metrics.items()}
    enc = load_encoder("clipscope-tiny", device="cpu")
    W = l2_normalize(class_embeddings(enc, inet.classnames_of(inet.subset_wnids("imagenet-r")),
                                      inet.templates("simple"))[0])
    paths, ids = inet.class_folder_set(sets / "r", "imagenet-r")
    f = l2_normalize(enc.encode_images(torch.stack([enc.preprocess(open_image_file(p)) for p in paths])).numpy())
    want = np.mean((f @ W.T).argmax(1) == np.array([inet.subset_wnids("imagenet-r").index(w) for w in ids]))
    assert m["accuracy_imagenet_r"] == pytest.approx(want)
    shifts = [m[f"accuracy_imagenet_{s}"] for s in ("v2", "sketch", "r", "a")]
    assert m["mean_shift_accuracy"] == pytest.approx(np.mean(shifts))
    assert m["shift_drop_imagenet_r"] == pytest.approx(m["accuracy_imagenet"] - m["accuracy_imagenet_r"])
    assert rep.metrics["accuracy_imagenet_r"].ci95[0] <= m["accuracy_imagenet_r"] <= rep.metrics["accuracy_imagenet_r"].ci95[1]
    rows = rep.tables["imagenet_c"]
    assert len(rows) == 11 and all(r["n"] == 6 for r in rows)
    assert [r["corruption"] for r in rep.tables["imagenet_c_errors"]] == ["fog", "gaussian_noise"]
    assert any("speckle_noise" in n for n in rep.notes)  # a partial extra corruption stays out of the mCE


def test_mce_arithmetic_by_hand():
    """AlexNet's published mean errors (hendrycks/robustness): gaussian noise 0.886428, fog
    0.819324, clean 0.435. With errors 0.5..0.9 (mean 0.7) and 0.2..0.6 (mean 0.4), clean error 0.3:
    CE = 0.7 / 0.886428 = 78.9687 % and 0.4 / 0.819324 = 48.8207 %; mCE = 63.8947 %;
    relative CE = (0.7 - 0.3) / (0.886428 - 0.435) = 88.6077 % and (0.4 - 0.3) / (0.819324 - 0.435) = 26.0196 %."""
    from clipscope.robustness.mce import corruption_errors

    table = [{"corruption": "gaussian_noise", "severity": s, "accuracy": 1 - (0.4 + 0.1 * s)} for s in range(1, 6)]
    table += [{"corruption": "fog", "severity": s, "accuracy": 1 - (0.1 + 0.1 * s)} for s in range(1, 6)]
    rows, mce, rel = corruption_errors(table, 0.7, alexnet=True)
    ce = {r["corruption"]: (r["ce"], r["relative_ce"]) for r in rows}
    assert ce["gaussian_noise"] == pytest.approx((78.9687, 88.6077), abs=1e-3)
    assert ce["fog"] == pytest.approx((48.8207, 26.0196), abs=1e-3)
    assert mce == pytest.approx(63.8947, abs=1e-3) and rel == pytest.approx((88.6077 + 26.0196) / 2, abs=1e-3)


def test_benchmark_errors_are_one_line(sets, run_cli, tmp_path):
    code, out, err = run_cli("robustness", "--model", "clipscope-tiny", "--benchmark", "imagenet-q:/x",
                             "--out", tmp_path / "o")
    assert code != 0 and "use NAME:DIR with NAME one of" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("robustness", "--model", "clipscope-tiny", "--benchmark", f"imagenet-r:{sets / 'tench'}",
                             "--out", tmp_path / "o")
    assert code == 1 and "is not one of imagenet-r's 200 classes" in err


def test_imagenet_c_leaves_out_folders_that_are_not_corruptions(sets, tmp_path):
    """A `my_backup/` folder beside the corruptions neither enters the mean accuracy nor the mCE,
    and an unreadable image is skipped with a note (#28)."""
    import shutil

    tree = tmp_path / "c"
    shutil.copytree(sets / "c", tree)
    shutil.copytree(tree / "fog", tree / "my_backup")
    (tree / "fog" / "1" / R3[0] / "broken.JPEG").write_bytes(b"not a jpeg")
    rep = clipscope.run("robustness", model="clipscope-tiny", templates="simple", progress=False, plots=False,
                        benchmark=[f"imagenet-c:{tree}"])
    rows = rep.tables["imagenet_c"]
    assert {r["corruption"] for r in rows} == {"fog", "gaussian_noise", "speckle_noise"}
    standard = [r["accuracy"] for r in rows if r["corruption"] in ("fog", "gaussian_noise")]
    m = rep.metrics["imagenet_c_mean_accuracy"]
    assert m.value == pytest.approx(np.mean(standard))
    assert m.extra["coverage"] == {"cells": 10, "of": 75}
    assert any("my_backup" in n and "left out" in n for n in rep.notes)
    assert any("1 unreadable image" in n for n in rep.notes)
