"""Blind-pair mining and kNN at scale: the indexed search (faiss IVF-Flat) against exact, its
measured recall, and exact mining on Ray against one process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipscope.analysis import neighbours
from clipscope.analysis.blindpairs import mine_blind_pairs
from clipscope.linalg import l2_normalize


def planted(n=3000, d=32, clusters=150, size=4, seed=0):
    """Rows with planted near-duplicate clusters (CLIP cosine > 0.95 within a cluster; random
    rows have none) and a reference space in which some of those pairs differ (blind)."""
    rng = np.random.default_rng(seed)
    clip = l2_normalize(rng.normal(size=(n, d)).astype(np.float32))
    ref = l2_normalize(rng.normal(size=(n, d + 8)).astype(np.float32))
    members = rng.choice(n, (clusters, size), replace=False)
    for k, m in enumerate(members):
        centre = clip[m[0]]
        clip[m] = l2_normalize((centre + 0.04 * rng.normal(size=(size, d))).astype(np.float32))
        if k % 2:  # half the clusters look alike to the reference too: not blind
            ref[m] = l2_normalize((ref[m[0]] + 0.05 * rng.normal(size=(size, d + 8))).astype(np.float32))
    return clip, ref


def pair_set(bp):
    return set(zip(bp.a.tolist(), bp.b.tolist()))


def test_exhaustive_index_finds_exactly_the_exact_pairs():
    """Where recall must be 1 (every cell searched), the indexed pairs, counts and table equal exact mining's."""
    clip, ref = planted()
    exact = mine_blind_pairs(clip, ref, top=None)
    plan = neighbours.IndexPlan.for_rows(len(clip), nlist=32, nprobe=32)
    assert plan.exhaustive
    index = neighbours.build_index(clip, plan)
    found = mine_blind_pairs(clip, ref, top=None, candidates=neighbours.indexed_range_pairs(index, 0.95))
    assert exact.n_clip_similar > 500 and exact.n_blind > 100
    assert (found.n_clip_similar, found.n_blind) == (exact.n_clip_similar, exact.n_blind)
    assert pair_set(found) == pair_set(exact) and np.array_equal(found.in_any, exact.in_any)
    assert np.allclose(np.sort(found.clip_cosine), np.sort(exact.clip_cosine), atol=1e-6)
    recall = neighbours.range_recall(index, 0.95, queries=300, seed=1)
    assert recall.value == 1.0 and recall.truth > 0 and recall.queries == 300


def test_recall_estimate_is_within_its_binomial_margin_of_the_true_recall():
    """A deliberately weak index (1 of 64 cells per query) misses pairs; the recall measured on
    sampled queries is within its 95% Wilson interval of the recall over every pair."""
    clip, _ = planted(n=4000, clusters=400, size=3, seed=3)
    clip[:, :4] += 0.0  # the clusters straddle cells: the weak index misses some of them
    index = neighbours.build_index(clip, neighbours.IndexPlan.for_rows(len(clip), nlist=64, nprobe=1, seed=2))
    truth = {(a, b) for a, b in neighbours.exact_range_of(clip, np.arange(len(clip)), 0.95) if a < b}
    found = set()
    for a, b, _ in neighbours.indexed_range_pairs(index, 0.95):
        found.update(zip(a.tolist(), b.tolist()))
    assert found <= truth  # re-scored exactly: never a pair below the threshold
    true_recall = len(found) / len(truth)
    assert 0.3 < true_recall < 0.99, true_recall
    est = neighbours.range_recall(index, 0.95, queries=1500, seed=5)
    assert est.truth > 100
    lo, hi = est.ci95
    margin = 1.96 * np.sqrt(true_recall * (1 - true_recall) / est.truth)
    assert lo <= true_recall <= hi and abs(est.value - true_recall) <= 1.5 * margin, (est, true_recall)


def test_indexed_knn_with_every_cell_equals_exact_and_measures_its_recall():
    from clipscope.linalg import blocked_topk

    clip, _ = planted(n=1500)
    q = np.arange(0, 1500, 7)
    index = neighbours.build_index(clip, neighbours.IndexPlan.for_rows(len(clip), nlist=16, nprobe=16))
    found = neighbours.indexed_topk(index, 5, q)
    _, exact = blocked_topk(clip[q], clip, 5, query_rows=q)
    assert all(set(a) == set(b) for a, b in zip(found.tolist(), exact.tolist()))
    recall = neighbours.knn_recall(clip, found, q, 5, queries=50)
    assert recall.value == 1.0 and recall.truth == 250


def cache_pair(tmp_path, clip, ref):
    from clipscope.cache import write_cache

    ids = [f"img{k:05d}" for k in range(len(clip))]
    for name, rows in (("clip", clip), ("ref", ref)):
        write_cache(tmp_path / f"{name}.h5", image_embeddings=rows, image_ids=ids,
                    attrs={"model": name, "pretrained": "none"})
    return tmp_path / "clip.h5", tmp_path / "ref.h5"


def test_cli_search_index_reports_its_recall_and_parameters(tmp_path, run_cli):
    clip, ref = planted()
    c, r = cache_pair(tmp_path, clip, ref)
    code, _, err = run_cli("blindpairs", c, "--reference-cache", r, "--out", tmp_path / "exact", "--no-plots", "-q")
    assert code == 0, err
    exact = json.loads((tmp_path / "exact" / "blindpairs.json").read_text())
    assert exact["config"]["search"] == "exact" and "search_recall" not in exact["metrics"]  # auto: small
    code, _, err = run_cli("blindpairs", c, "--reference-cache", r, "--out", tmp_path / "index", "--no-plots", "-q",
                           "--search", "index", "--nprobe", "1000", "--recall-queries", "500")
    assert code == 0, err
    assert "indexed search (IVF-Flat" in err
    index = json.loads((tmp_path / "index" / "blindpairs.json").read_text())
    assert index["config"]["search"] == "index" and index["config"]["nprobe"] == index["config"]["nlist"]
    recall = index["metrics"]["search_recall"]
    assert recall["value"] == 1.0 and "of 500 sampled queries" in recall["description"]
    for key in ("n_blind_pairs", "n_clip_similar_pairs", "images_in_blind_pair"):
        assert index["metrics"][key]["value"] == exact["metrics"][key]["value"], key
    assert any("re-scored exactly" in n for n in index["notes"])


def test_missing_faiss_is_one_clear_line(tmp_path, run_cli, monkeypatch):
    import builtins

    clip, ref = planted(n=400, clusters=20)
    c, r = cache_pair(tmp_path, clip, ref)
    real = builtins.__import__

    def no_faiss(name, *a, **kw):
        if name == "faiss":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    code, _, err = run_cli("blindpairs", c, "--reference-cache", r, "--out", tmp_path / "o", "--search", "index")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "pip install 'clipscope-diagnostics[index]'" in lines[0] and "--search ray" in lines[0]


def test_drift_indexed_knn_equals_exact_with_every_cell(tmp_path):
    from clipscope.cache import Cache, write_cache
    from clipscope.tasks import drift

    clip, _ = planted(n=1200, clusters=60)
    rng = np.random.default_rng(9)
    moved = l2_normalize((clip + 0.1 * rng.normal(size=clip.shape)).astype(np.float32))
    ids = [f"i{k}" for k in range(len(clip))]
    for name, rows in (("old", clip), ("new", moved)):
        write_cache(tmp_path / f"{name}.h5", image_embeddings=rows, image_ids=ids, attrs={"model": name})
    with Cache.open(tmp_path / "old.h5") as a, Cache.open(tmp_path / "new.h5") as b:
        exact = drift.evaluate(a, b, k=5, search="exact", max_queries=300)
        index = drift.evaluate(a, b, k=5, search="index", nprobe=10**6, max_queries=300, recall_queries=100)
    assert index.metrics["knn_overlap_image"]["value"] == pytest.approx(exact.metrics["knn_overlap_image"]["value"])
    assert index.metrics["knn_search_recall_image"]["value"] == 1.0
    assert index.config["search"] == "index" and "knn_search_recall_image" not in exact.metrics


@pytest.mark.slow
def test_ray_exact_mining_equals_one_process(tmp_path):
    from clipscope.analysis.blindpairs import exact_similar_pairs
    from clipscope.distributed import similar_pairs_on_ray

    clip, ref = planted(n=2500)
    c, _ = cache_pair(tmp_path, clip, ref)
    from clipscope.cache import Cache

    with Cache.open(c) as cache:
        rows = np.arange(len(clip))
        clip_rows = cache.normalized_image_embeddings()
    import ray

    one = mine_blind_pairs(clip_rows, ref, top=50, block=256)
    try:
        batches = similar_pairs_on_ray(c, rows, 0.95, block=256, num_tasks=7, num_cpus=2)
    finally:
        ray.shutdown()  # its processes do not outlive the test
    spread = mine_blind_pairs(clip_rows, ref, top=50, block=256, candidates=batches)
    local = list(exact_similar_pairs(clip_rows, 0.95, block=256))
    assert sum(len(b[0]) for b in batches) == sum(len(b[0]) for b in local) == one.n_clip_similar
    assert (spread.n_blind, spread.n_clip_similar) == (one.n_blind, one.n_clip_similar)
    assert np.array_equal(spread.a, one.a) and np.array_equal(spread.b, one.b)
    assert np.array_equal(spread.clip_cosine, one.clip_cosine)
