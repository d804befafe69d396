"""The library entry: clipscope.run gives a Report without click; the CLI is a thin layer on it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

import clipscope
from clipscope.errors import UsageError


def _arrays(n=120, d=16, seed=0):
    rng = np.random.default_rng(seed)
    I = rng.normal(size=(n, d))
    return I, I + rng.normal(size=(n, d))


def test_run_on_arrays_gives_a_report(tmp_path):
    I, T = _arrays()
    r = clipscope.run("gap", clipscope.from_arrays(I, T))
    m = r.metrics["centroid_distance"]
    Iu = I / np.linalg.norm(I, axis=1, keepdims=True)
    Tu = T / np.linalg.norm(T, axis=1, keepdims=True)
    assert m.extra["plug_in"] == pytest.approx(np.linalg.norm(Iu.mean(0) - Tu.mean(0)), abs=1e-6)
    assert m.ci95[0] <= m.value <= m.ci95[1] and m.source and m.value < m.extra["plug_in"]
    d = r.to_dict()
    assert d["command"] == "gap" and d["metrics"]["centroid_distance"]["unit"] == ""
    # figures travel as small specs: no array in them is anywhere near an embedding matrix's size
    for _, args, kwargs in r.figures:
        for a in [*args, *kwargs.values()]:
            assert not (isinstance(a, np.ndarray) and a.size > 2 * 2000 * 16), a.shape
    path = r.save(tmp_path / "gap")
    saved = json.loads(path.read_text())
    assert saved["metrics"]["centroid_distance"]["value"] == m.value
    assert sorted(p.name for p in (tmp_path / "gap").glob("*.png")) == sorted(saved["artifacts"].values())
    assert "<table>" in r._repr_html_() and "centroid_distance" in r._repr_html_()


def test_run_with_a_model_extracts_through_the_content_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSCOPE_CACHE_DIR", str(tmp_path / "cc"))
    r = clipscope.run("uniformity", model="clipscope-tiny", data="probes:32")
    assert r.model["name"] == "clipscope-tiny" and r.data["counts"]["images"] == 32
    assert len(list((tmp_path / "cc").glob("*.h5"))) == 1


def test_run_refuses_bad_calls():
    I, T = _arrays()
    with pytest.raises(UsageError, match="unknown command"):
        clipscope.run("nope")
    with pytest.raises(UsageError, match="takes no option"):
        clipscope.run("gap", clipscope.from_arrays(I, T), no_such=1)
    with pytest.raises(UsageError, match="CACHE"):
        clipscope.run("gap")


def test_from_arrays_with_several_captions_per_image():
    I, _ = _arrays(20)
    T = np.repeat(I, 3, axis=0) + 0.1
    pairs = np.stack([np.repeat(np.arange(20), 3), np.arange(60)], 1)
    r = clipscope.run("uniformity", clipscope.from_arrays(I, T, pairs))
    assert r.data["counts"]["pairs"] == 60 and r.metrics["uniformity_cross"].value is not None


def test_the_cli_calls_the_library(run_cli, tmp_path, mtg):
    """Same JSON from the CLI and from clipscope.run on the same cache (timestamps aside)."""
    code, _, err = run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", tmp_path / "c.h5")
    assert code == 0, err
    code, out, err = run_cli("gap", tmp_path / "c.h5", "--json", "-", "--no-plots")
    assert code == 0, err
    cli = json.loads(out)
    lib = clipscope.run("gap", str(tmp_path / "c.h5"), plots=False).to_dict()
    for d in (cli, lib):
        d.pop("created_utc")
    assert cli == lib


@pytest.mark.slow
def test_example_training_loop_runs():
    p = subprocess.run([sys.executable, str(REPO / "examples" / "gap_per_epoch.py"), "--epochs", "1", "--steps", "1",
                        "--batch", "8"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "epoch 1:" in p.stdout and "centroid distance" in p.stdout
