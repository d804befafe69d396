"""Sharded extraction on a local Ray cluster (2 CPU workers) equals single-process extraction."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray  # noqa: E402  (the optional "distributed" extra; make test installs it)
from conftest import REPO, make_image_folder

from clipscope import Cache
from clipscope.distributed import plan_shards


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


@pytest.mark.slow
def test_sharded_cache_equals_single_process(tmp_path, monkeypatch):
    """One local Ray cluster for the whole test (each `extract --engine ray` would start its own)."""
    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=7)  # 21 images + 3 broken
    spec = f"folder:{folder}"
    import socket
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="cs-ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAY_DISABLE_IMPORT_WARNING": "1",
           "RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster
    common = ["--model", "clipscope-tiny", "--pretrained", "none", "--data", spec, "--batch-size", "4", "--quiet"]
    from clipscope.cli.main import main

    assert main(["extract", *common, "--out", str(tmp_path / "single.h5"), "--workers", "0"]) == 0
    ray_bin = str(Path(sys.executable).parent / "ray")
    started = subprocess.run([ray_bin, "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
                              f"--port={port}", f"--temp-dir={ray_tmp}"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        def run(*a, quiet=True):
            args = common if quiet else common[:-1]  # without --quiet the shards' progress is printed
            return subprocess.run([sys.executable, "-m", "clipscope.cli.main", "extract", *args, *a, "--address", f"127.0.0.1:{port}"],
                                  env=env, cwd=REPO, capture_output=True, text=True, timeout=600)

        sharded = run("--out", str(tmp_path / "out" / "ray.h5"), "--engine", "ray", "--num-shards", "2")
        assert sharded.returncode == 0, sharded.stderr
        merged = run("--out", str(tmp_path / "merged.h5"), "--engine", "ray", "--num-shards", "3", "--merge")
        assert merged.returncode == 0, merged.stderr
        again = run("--out", str(tmp_path / "merged.h5"), "--engine", "ray", "--num-shards", "3", "--merge", quiet=False)
        # gap shard by shard (#19): over the virtual cache's shards (class prompts: many images
        # per text), and over a 1:1 imported cache cut into 3 ranges, against local runs
        rng = np.random.default_rng(0)
        I = rng.normal(size=(500, 24)).astype(np.float32) + 0.5
        np.save(tmp_path / "pairs.npy", np.stack([I, I + rng.normal(size=I.shape).astype(np.float32)]))
        assert main(["import", "--pair-array", str(tmp_path / "pairs.npy"), "--out", str(tmp_path / "one.h5")]) == 0
        # uniformity sampled (--max-pairs) as at scale: its sample is read across the shards
        # (this process joins the cluster as one driver: one job, whose workers serve all four runs)
        for key in ("RAY_DISABLE_IMPORT_WARNING", "RAY_AUTH_MODE"):
            monkeypatch.setenv(key, env[key])
        runs = {}
        try:
            for name, cache, extra in (("virtual", tmp_path / "out" / "ray.h5", []), ("one", tmp_path / "one.h5",
                                                                                        ["--num-shards", "3"])):
                for command, opts in (("gap", []), ("uniformity", ["--max-pairs", "5000", "--sample-pairs", "2000"])):
                    out = tmp_path / f"{command}-{name}"
                    assert main([command, str(cache), *opts, "--out", str(out / "local"), "--no-plots", "-q"]) == 0
                    assert main([command, str(cache), *opts, "--engine", "ray", "--address", f"127.0.0.1:{port}",
                                 "--out", str(out / "ray"), "-q", *extra]) == 0
                    runs[command, name] = [json.loads((out / e / f"{command}.json").read_text()) for e in ("local", "ray")]
        finally:
            ray.shutdown()
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    # a rerun skips the finished shards
    assert again.returncode == 0 and "already done" in again.stderr, again.stderr
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
    assert any(not m.get("exact", True) for m in runs["uniformity", "one"][1]["metrics"].values())
    for (command, name), (local, on_ray) in runs.items():
        assert on_ray["config"]["engine"] == "ray" and len(list((tmp_path / f"{command}-{name}" / "ray").glob("*.png")))
        # every metric, paired_angle included (the pair sums carry the angles), comes from Ray too
        assert set(local["metrics"]) == set(on_ray["metrics"])
        for k, m in on_ray["metrics"].items():
            want = local["metrics"][k]
            assert (m["value"] is None) == (want["value"] is None) and (m.get("ci95") is None) == (want.get("ci95") is None)
            if want["value"] is not None:  # None: undefined in both (separability with 3 texts)
                assert m["value"] == pytest.approx(want["value"], rel=1e-9 if command == "gap" else 1e-7), (name, k)
            if want.get("ci95") is not None:  # float32 rounding of the per-unit sums over other blocks
                assert m["ci95"] == pytest.approx(want["ci95"], rel=1e-6), (name, k)
        if command != "gap":
            continue
        dims, want = on_ray["tables"]["per_dimension_gap"], local["tables"]["per_dimension_gap"]
        assert dims["top_share"] == pytest.approx(want["top_share"], rel=1e-9)
        pairs_of_rows = list(zip(dims["rows"], want["rows"])) + list(zip(on_ray["tables"]["shift_sweep"],
                                                                         local["tables"]["shift_sweep"]))
        for a, b in pairs_of_rows:
            assert a.keys() == b.keys(), name
            for k in a:
                # the sweep's shifted centroids are float32 GEMMs over other blocks: ~1e-8 apart
                assert a[k] == (b[k] if isinstance(b[k], str) else pytest.approx(b[k], rel=1e-6, abs=1e-7)), (name, k)


def test_ray_missing_is_a_clear_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--pretrained", "none", "--data", "probes:4",
                           "--out", tmp_path / "c.h5", "--engine", "ray")
    assert code == 1 and "clipscope-diagnostics[distributed]" in err
