"""Sharded extraction on a local Ray cluster (2 CPU workers) equals single-process extraction."""

import os
import subprocess
import sys

import numpy as np

from clipscope import Cache
from clipscope.distributed import plan_shards
from conftest import REPO, make_image_folder

import ray  # noqa: E402,F401  (the optional "distributed" extra; make test installs it)


def test_plan_shards_on_batch_boundaries():
    assert plan_shards(100, 3, 8) == [(0, 32), (32, 64), (64, 100)]
    assert plan_shards(5, 4, 8) == [(0, 5)]  # never more shards than batches
    ranges = plan_shards(1000, 7, 16)
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(lo % 16 == 0 for lo, _ in ranges) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def _all(cache):
    out = {"ids": cache.image_ids, "captions": cache.text_captions, "pairs": cache.pairs.tolist(),
           "failed": cache.failed, "img": cache.image_embeddings[:], "txt": cache.text_embeddings[:]}
    out["labels"] = None if cache.image_labels is None else cache.image_labels.tolist()
    return out


def test_sharded_cache_equals_single_process(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=7)  # 21 images + 3 broken
    spec = f"folder:{folder}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAY_DISABLE_IMPORT_WARNING": "1"}
    common = ["--model", "clipscope-tiny", "--pretrained", "none", "--data", spec, "--batch-size", "4", "--quiet"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "clipscope.cli.main", "extract", *common, *a],  # noqa: E731
                                    env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    single = run("--out", str(tmp_path / "single.h5"), "--workers", "0")
    assert single.returncode == 0, single.stderr
    sharded = run("--out", str(tmp_path / "out" / "ray.h5"), "--engine", "ray", "--num-shards", "2")
    assert sharded.returncode == 0, sharded.stderr
    merged = run("--out", str(tmp_path / "merged.h5"), "--engine", "ray", "--num-shards", "3", "--merge")
    assert merged.returncode == 0, merged.stderr
    # the virtual cache reads from another working directory and after the folder moves
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)
    with Cache.open(tmp_path / "single.h5") as a, Cache.open(moved / "ray.h5") as b, Cache.open(tmp_path / "merged.h5") as c:
        ref = _all(a)
        for other in (_all(b), _all(c)):
            for key in ref:
                if isinstance(ref[key], np.ndarray):
                    assert np.array_equal(ref[key], other[key]), key
                else:
                    assert ref[key] == other[key], key
        assert b["image/embeddings"].is_virtual and not c["image/embeddings"].is_virtual
        assert len(ref["failed"]) == 3
        assert b.attrs["shards"] == 2 and b.attrs["pretrained"] == "none"
    # a rerun skips the finished shards
    (tmp_path / "again").mkdir()
    again = subprocess.run([sys.executable, "-m", "clipscope.cli.main", "extract", *common[:-1], "--out",
                            str(tmp_path / "merged.h5"), "--engine", "ray", "--num-shards", "3", "--merge"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already done" in again.stderr


def test_ray_missing_is_a_clear_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--pretrained", "none", "--data", "probes:4",
                           "--out", tmp_path / "c.h5", "--engine", "ray")
    assert code == 1 and "clipscope-diagnostics[distributed]" in err
