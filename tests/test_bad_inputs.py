"""A corpus of malformed inputs and reports: each gets one line `Error: ...`, exit 1 (or the
gate's exit 3), and nothing already written is changed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest


def one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def report(value=0.5, ci=None, hib=True, name="centroid_distance", **extra_metrics) -> dict:
    metrics = {name: {"value": value, "ci95": ci, "higher_is_better": hib, "description": "d"}}
    metrics.update(extra_metrics)
    return {"schema_version": 1, "clipscope_version": "0", "command": "gap", "created_utc": "2026-01-01T00:00:00+00:00",
            "model": {"name": "m", "pretrained": "none"}, "data": {"spec": "s", "counts": {}}, "seed": 0,
            "config": {}, "metrics": metrics, "tables": {}, "artifacts": {}}


def write(path: Path, obj, raw: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if raw is not None else json.dumps(obj))
    return path


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("raw_value, why", [("NaN", "NaN"), ("null", "null"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_gate_fails_on_a_non_finite_new_value(tmp_path, run_cli, raw_value, why):
    base = write(tmp_path / "base.json", report(0.5))
    text = json.dumps(report(0.5)).replace('"value": 0.5', f'"value": {raw_value}')
    new = write(tmp_path / "new.json", None, text)
    code, out, _ = run_cli("compare", base, new)
    assert code == 3, (why, out)
    code, out, _ = run_cli("compare", base, new, "--allow-missing")
    assert code == 0, (why, out)
    assert "missing" in out


def test_gate_fails_on_a_metric_missing_from_the_new_report(tmp_path, run_cli):
    base = write(tmp_path / "base.json", report(0.5, other={"value": 1.0, "ci95": None, "higher_is_better": None,
                                                             "description": "d"}))
    new = write(tmp_path / "new.json", report(0.5))
    code, out, _ = run_cli("compare", base, new, "--format", "json")
    assert code == 3
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert rows["other"]["status"] == "regression" and "missing" in rows["other"]["reason"]
    assert run_cli("compare", base, new, "--allow-missing")[0] == 0


def test_gate_undefined_on_both_sides_is_not_a_regression(tmp_path, run_cli):
    base = write(tmp_path / "base.json", report(None))
    new = write(tmp_path / "new.json", report(None))
    code, out, _ = run_cli("compare", base, new, "--format", "json")
    assert code == 0 and json.loads(out)["rows"][0]["status"] == "undefined"


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r["metrics"]["centroid_distance"].__setitem__("value", "0.5"), "metrics/centroid_distance/value"),
    (lambda r: r["metrics"]["centroid_distance"].__setitem__("ci95", [0.4]), "metrics/centroid_distance/ci95"),
    (lambda r: r["metrics"]["centroid_distance"].pop("higher_is_better"), "metrics/centroid_distance"),
    (lambda r: r.__setitem__("metrics", []), "metrics"),
])
def test_malformed_report_is_an_error_not_a_pass(tmp_path, run_cli, mutate, where):
    base = write(tmp_path / "base.json", report(0.5))
    bad = copy.deepcopy(report(0.5))
    mutate(bad)
    new = write(tmp_path / "new.json", bad)
    for args in ((base, new), (new, base)):
        code, _, err = run_cli("compare", *args)
        assert code == 1
        line = one_line(err)
        assert "new.json" in line and where in line


def test_report_of_a_newer_schema_says_upgrade(tmp_path, run_cli):
    r = report(0.5)
    r["schema_version"] = 7
    code, _, err = run_cli("compare", write(tmp_path / "a.json", report(0.5)), write(tmp_path / "b.json", r))
    assert code == 1 and "newer clipscope" in one_line(err)


# --------------------------------------------------------------------------- suites


def suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("body, expect", [
    ('[suite]\ntolerance = "0.1"\n[[run]]\ncommand = "gap"\n', "suite.tolerance"),
    ('[tolerances]\ncentroid_distance = "x"\n[[run]]\ncommand = "gap"\n', "centroid_distance"),
    ('[[run]]\nname = "../escape"\ncommand = "gap"\n', "plain folder name"),
    ('[[run]]\nname = "/abs"\ncommand = "gap"\n', "plain folder name"),
    ('[[run]]\ncommand = "gap"\n[[run]]\ncommand = "gap"\n', "two runs are named"),
    ('[[run]]\ncommand = "rm"\n', "command 'rm'"),
    ('[[run]]\ncommand = "gap"\n[thresholds]\n"gap.x" = { min = "1" }\n', "numeric min"),
    ('[[run]]\ncommand = "gap"\n[thresholds]\n"other.x" = { min = 1 }\n', "RUN.METRIC"),
    ('[[run]]\ncommand = "gap"\ncache = "no-such.h5"\n', "no cache at"),
    ('[[run]]\ncommand = "gap"\ncache = "CACHE"\noptions = { no_such_option = 1 }\n', "no option --no-such-option"),
])
def test_suite_is_validated_before_anything_runs(tmp_path, run_cli, body, expect, mtg):
    import shutil

    shutil.copy(mtg / "features_clasp.npy", tmp_path / "f.npy")
    code, _, err = run_cli("import", "--pair-array", tmp_path / "f.npy", "--out", tmp_path / "c.h5")
    assert code == 0, err
    path = suite(tmp_path, body.replace("CACHE", str(tmp_path / "c.h5")))
    code, _, err = run_cli("check", path, "--out", tmp_path / "runs")
    assert code == 1
    assert expect in one_line(err)
    assert not (tmp_path / "runs").exists(), "nothing ran"
    assert not (tmp_path.parent / "escape").exists()


def test_threshold_on_an_undefined_metric_is_a_regression(tmp_path, run_cli, mtg):
    code, _, err = run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", tmp_path / "c.h5")
    assert code == 0, err
    body = (f'[[run]]\ncommand = "gap"\ncache = "{tmp_path / "c.h5"}"\noptions = {{ no_plots = true }}\n'
            '[thresholds]\n"gap.no_such_metric" = { min = 0 }\n')
    code, out, err = run_cli("check", suite(tmp_path, body), "--out", tmp_path / "runs")
    assert code == 3, err
    assert "threshold not checkable" in out


# --------------------------------------------------------------------------- the HTML report


def test_report_embeds_only_pngs_inside_the_run_folder(tmp_path, run_cli):
    from PIL import Image

    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(secret)
    run = tmp_path / "run"
    run.mkdir()
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(run / "own.png")
    r = report(0.5)
    r["artifacts"] = {"absolute": str(secret), "dotdot": "../secret.png", "own": "own.png"}
    write(run / "gap.json", r)
    (run / "link.png").symlink_to(secret)
    r2 = copy.deepcopy(r)
    r2["artifacts"] = {"link": "link.png"}
    write(run / "sub" / "gap.json", r2)
    code, _, err = run_cli("report", run, "-o", tmp_path / "page.html")
    assert code == 0, err
    page = (tmp_path / "page.html").read_text()
    import base64

    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert base64.b64encode((run / "own.png").read_bytes()).decode() in page


# --------------------------------------------------------------------------- data sources


def test_negative_labels_are_refused(tmp_path, run_cli):
    from conftest import save_image

    save_image(tmp_path / "a.jpg", 1)
    (tmp_path / "c.csv").write_text("image,caption,label\na.jpg,a cat,-1\n")
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--data", f"captions:{tmp_path / 'c.csv'}",
                           "--out", tmp_path / "c.h5")
    assert code == 1 and "label -1" in one_line(err)
    assert not (tmp_path / "c.h5").exists()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from clipscope.data import open_image_file

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "w.png")
    with Image.open(tmp_path / "w.png") as im:
        assert im.mode.startswith("I")
    rgb = np.asarray(open_image_file(tmp_path / "w.png"))
    expected = np.rint(ramp / 257.0)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert 100 < rgb.mean() < 155  # a ramp, not white


@pytest.mark.parametrize("content, expect", [
    ("[]", "not a COCO captions file"),
    ('{"images": {}, "annotations": []}', "not a COCO captions file"),
    ('{"images": [], "annotations": [{"image_id": 1, "caption": "x"}]}', "has no images"),
    ('{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "x"}]}', "images[0] lacks file_name"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]}', "annotations[0] lacks caption"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}', "pairs nothing"),
    ('{"images": [{"id": 1, "file_name": 5}], "annotations": [{"image_id": 1, "caption": "x"}]}', "not a string"),
    ("{not json", "not valid JSON"),
])
def test_malformed_coco_files(tmp_path, run_cli, content, expect):
    ann = tmp_path / "captions.json"
    ann.write_text(content)
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--data", f"coco:{ann}", "--out", tmp_path / "c.h5")
    assert code == 1 and expect in one_line(err)
    assert not (tmp_path / "c.h5").exists()


# --------------------------------------------------------------------------- caches and metrics


def _cache(tmp_path, run_cli, n=6, pairs=None, name="c.h5"):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "i.npy", rng.normal(size=(n, 8)).astype(np.float32))
    np.save(tmp_path / "t.npy", rng.normal(size=(n, 8)).astype(np.float32))
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "i.npy", "--text-embeddings", tmp_path / "t.npy",
                           "--out", tmp_path / name)
    assert code == 0, err
    return tmp_path / name


def test_uniformity_with_an_underflowing_temperature(tmp_path, run_cli):
    c = _cache(tmp_path, run_cli)
    for t, expect in (("1000", "smaller --t"), ("-1", "positive number"), ("0", "positive number")):
        code, _, err = run_cli("uniformity", c, "--t", t, "--out", tmp_path / "u")
        assert code == 1 and expect in one_line(err)


def test_one_row_is_not_enough(tmp_path, run_cli):
    c = _cache(tmp_path, run_cli, n=1)
    for cmd in ("gap", "uniformity"):
        code, _, err = run_cli(cmd, c, "--out", tmp_path / cmd)
        assert code == 1 and "at least 2" in one_line(err)


def test_every_image_failed(tmp_path, run_cli):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.jpg").write_text("not an image")
    (tmp_path / "imgs" / "a" / "y.jpg").write_bytes(b"")
    code, _, err = run_cli("gap", "--model", "clipscope-tiny", "--data", f"folder:{tmp_path / 'imgs'}", "--out", tmp_path / "g", "-q")
    assert code == 1 and "every input failed" in one_line(err)


def test_pair_indices_out_of_range_in_a_cache(tmp_path, run_cli):
    import h5py

    c = _cache(tmp_path, run_cli)
    for bad in ([-1, 0], [0, 6]):
        with h5py.File(c, "a") as f:
            p = f["pairs"][:]
            p[2] = bad
            f["pairs"][...] = p
        code, _, err = run_cli("gap", c, "--out", tmp_path / "g")
        assert code == 1 and "pair 2 names" in one_line(err)


def test_import_refuses_negative_pairs(tmp_path, run_cli):
    _cache(tmp_path, run_cli)
    np.save(tmp_path / "p.npy", np.array([[0, 0], [-1, 1]]))
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "i.npy", "--text-embeddings", tmp_path / "t.npy",
                           "--pairs", tmp_path / "p.npy", "--out", tmp_path / "d.h5")
    assert code == 1 and one_line(err)


def test_out_that_cannot_be_written_fails_before_work(tmp_path, run_cli):
    import time

    c = _cache(tmp_path, run_cli)
    (tmp_path / "afile").write_text("x")
    start = time.time()
    code, _, err = run_cli("gap", c, "--out", tmp_path / "afile" / "run")
    assert code == 1 and "is a file" in one_line(err)
    assert time.time() - start < 5


# --------------------------------------------------------------------------- checkpoints


class NotAWeight:  # a pickled object: weights_only loading must refuse it
    pass


def test_unsafe_checkpoint_is_refused_as_unsafe_not_offline(tmp_path):
    import torch

    from clipscope.errors import ClipscopeError
    from clipscope.models import load_encoder

    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": NotAWeight()}, bad)
    for model in ("clipscope-tiny", "timm:resnet10t"):
        with pytest.raises(ClipscopeError) as e:
            load_encoder(model, str(bad))
        assert "refused as unsafe" in str(e.value) and "offline" not in str(e.value), model


# --------------------------------------------------------------------------- a new user's errors (issue 17)


def test_usage_errors_come_before_any_work(run_cli, tmp_path):
    import time

    start = time.time()
    code, _, err = run_cli("gap", "--model", "clipscope-tiny", "--data", "probes:8")  # no --out / --json
    assert code == 2 and "--out" in err and time.time() - start < 5


def test_unwritable_report_and_import_targets_are_named(run_cli, tmp_path, mtg):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", tmp_path / "afile" / "c.h5")
    assert code == 1 and "afile" in one_line(err) and ".tmp" not in err
    code, _, err = run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", tmp_path / "c.h5")
    assert code == 0, err
    code, _, err = run_cli("gap", tmp_path / "c.h5", "--out", tmp_path / "run", "--no-plots", "-q")
    assert code == 0, err
    code, _, err = run_cli("report", tmp_path / "run", "-o", tmp_path / "afile" / "r.html")
    assert code == 1 and "is a file" in one_line(err)


def test_hints_name_the_right_flag():
    from clipscope.errors import ClipscopeError
    from clipscope.models import load_encoder

    with pytest.raises(ClipscopeError, match="bundled"):
        load_encoder("clipscope-tiny", "no-such-tag")
    with pytest.raises(ClipscopeError, match="--reference-pretrained") as e:
        load_encoder("timm:vit_tiny_patch16_224")  # offline: the reference's own weights cannot be fetched
    assert "--pretrained PATH" not in str(e.value)


# --------------------------------------------------------------------------- outputs that would destroy inputs (#28)


def test_no_output_may_overwrite_an_input_a_cache_or_a_report(tmp_path, run_cli):
    import time

    c = _cache(tmp_path, run_cli)
    code, _, err = run_cli("gap", c, "--out", tmp_path / "runs" / "gap", "--no-plots", "-q")
    assert code == 0, err
    report_path = tmp_path / "runs" / "gap" / "gap.json"
    kept = {p: p.read_bytes() for p in (c, report_path)}
    start = time.time()
    for args, expect in (
            (("export", c, "--out", c), "an input this run reads"),
            (("gap", c, "--json", c), "an input this run reads"),
            (("report", tmp_path / "runs", "-o", c), "HDF5"),
            (("report", tmp_path / "runs", "-o", report_path), "an input this run reads"),
            (("uniformity", c, "--json", report_path), "gap report"),
            (("explore", c, "--format", "tensorboard", "--out", tmp_path / "afile" / "tb"), "is a file")):
        if "afile" in str(args[-1]):
            (tmp_path / "afile").write_text("x")
        code, _, err = run_cli(*args)
        assert code == 1, (args, err)
        assert expect in one_line(err), args
    assert time.time() - start < 30, "refused before any work"
    assert all(p.read_bytes() == b for p, b in kept.items()), "nothing was destroyed"
    code, _, err = run_cli("gap", c, "--json", report_path, "-q")  # a rerun replaces its own report
    assert code == 0, err
