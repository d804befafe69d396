"""Geometry beyond memory (--engine stream): rows read from the cache file block by block give
the in-memory values on every layout, with blocks that do not divide the row counts; `auto`
streams when the rows would not fit the memory budget, and says so; every engine refuses
work that would not fit, in one line, before it starts."""

from __future__ import annotations

import numpy as np
import pytest
from test_negatives import LAYOUTS, layout

from clipscope.cache import Cache, RowReader, write_cache

BLOCKS = (7, 13)  # row counts are 30 / 10 + 30 / 30 + 4: no block divides them
# and 1:1 pairs in row order (as imported pair arrays), which streams round 2 and the pairs in one pass
ALL = (*LAYOUTS, "row_aligned")


def cache_of(tmp_path, name, seed=3):
    if name == "row_aligned":
        I, T, pairs = layout("one_to_one", seed=seed)
        T, pairs = T[pairs[:, 1]], np.stack([np.arange(len(I))] * 2, 1)
    else:
        I, T, pairs = layout(name, seed=seed)
    path = tmp_path / f"{name}.h5"
    write_cache(path, image_embeddings=I, text_embeddings=T, pairs=pairs, image_ids=[f"i{k}" for k in range(len(I))],
                text_captions=[f"t{k}" for k in range(len(T))], attrs={"model": "test", "pretrained": "none"})
    return path


def same_numbers(a, b, path=""):
    """Equal to float32 rounding: every number of a (nested dicts and lists) equals b's."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            same_numbers(x, y, f"{path}[{k}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9, nan_ok=True), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("block", BLOCKS)
def test_streamed_gap_equals_in_memory(tmp_path, name, block):
    from clipscope.tasks import gap

    path = cache_of(tmp_path, name)
    with Cache.open(path) as c:
        memory = gap.evaluate(c, engine="local", sweep_max_rows=12, seed=1)
        streamed = gap.evaluate(c, engine="stream", block=block, sweep_max_rows=12, seed=1)
    assert memory.config.pop("engine") == "local" and streamed.config.pop("engine") == "stream"
    same_numbers(memory.metrics, streamed.metrics)
    same_numbers(memory.tables, streamed.tables)
    assert memory.metrics["centroid_distance"]["ci95"] is not None
    assert memory.config == streamed.config and memory.counts == streamed.counts


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("max_pairs", (10**9, 40))  # exact, and sampled as at scale
def test_streamed_uniformity_equals_in_memory(tmp_path, name, max_pairs):
    from clipscope.tasks import uniformity

    path = cache_of(tmp_path, name)
    kw = dict(max_pairs=max_pairs, sample_pairs=120, seed=2, block=5)
    with Cache.open(path) as c:
        memory = uniformity.evaluate(c, engine="local", **kw)
        streamed = uniformity.evaluate(c, engine="stream", stream_block=BLOCKS[0], **kw)
    assert {"alignment", "relative_alignment", "uniformity_cross"} <= memory.metrics.keys()
    assert memory.metrics["uniformity_image"]["exact"] is (max_pairs > 10**6)
    same_numbers(memory.metrics, streamed.metrics)


def test_streamed_rows_are_read_in_blocks_never_whole(tmp_path, monkeypatch):
    """Nothing of size n x d is read at once: every read of the rows is at most a block (or the
    sampled rows of the sampled parts, fewer than the rows)."""
    from clipscope.tasks import gap, uniformity

    rng = np.random.default_rng(4)
    n = 100_000  # five times linear separability's sample of 20,000 rows per modality
    I, T = (rng.normal(size=(n, 4)).astype(np.float32) for _ in range(2))
    pairs = np.stack([np.arange(n), np.arange(n)], 1)
    path = tmp_path / "big.h5"
    write_cache(path, image_embeddings=I, text_embeddings=T, pairs=pairs, image_ids=[f"i{k}" for k in range(n)],
                text_captions=[f"t{k}" for k in range(n)], attrs={"model": "test", "pretrained": "none"})
    sizes = []
    real = Cache._normalized

    point_reads = []

    def spy(self, key, rows=None, span=None):
        out = real(self, key, rows, span)
        sizes.append(len(out))
        if rows is not None:
            point_reads.append(len(out))
        return out

    monkeypatch.setattr(Cache, "_normalized", spy)
    monkeypatch.setattr(RowReader, "SLAB", 4096)
    with Cache.open(path) as c:
        gap.evaluate(c, engine="stream", block=1000, sweep_max_rows=50)
        # the samples (separability's, the sweep's) were kept as the blocks went by: no scattered read
        assert point_reads == [], point_reads
        uniformity.evaluate(c, engine="stream", stream_block=1000, max_pairs=1000, sample_pairs=500)
        assert sum(point_reads) <= 4, point_reads  # relative alignment's 2 sampled pairs; the pair-mean samples kept
    # blocks of 1000 rows, the near-zero-gap variance's units 8192 at a time, dense samples (linear
    # separability's 20,000 rows a modality) in slabs of 4096 rows, sparse ones point by point
    assert max(sizes) <= 8192 < n, max(sizes)


def test_kept_rows_are_returned_in_any_order_after_their_entries_merge(tmp_path):
    """Rows wanted before a pass are kept block by block (here 25 entries, merged past 16) and
    index reads return exactly the cache's rows, in the order asked, with repeats."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 6)).astype(np.float32)
    path = tmp_path / "rows.h5"
    write_cache(path, image_embeddings=X, text_embeddings=X[:3], attrs={"model": "test", "pretrained": "none"})
    with Cache.open(path) as c:
        expected = c.normalized_span("image", 0, 500)
        reader = RowReader(c, "image/embeddings")
        wanted = np.sort(rng.choice(500, 120, replace=False))
        reader.want(wanted)
        for r0 in range(0, 500, 20):  # a pass: 25 blocks, each keeping its wanted rows
            reader[r0:r0 + 20]
        ask = rng.choice(wanted, 300)
        np.testing.assert_array_equal(reader[ask], expected[ask])
        assert len(reader._memo) == 1  # merged into one sorted entry
        np.testing.assert_array_equal(reader[wanted[::-1]], expected[wanted[::-1]])


def test_unit_renumbering_by_counting_equals_the_sorted_one():
    """Compacting unit ids (0..U-1 by rank, FIXED kept) gives np.unique's renumbering for dense
    ids with gaps, already compact ids (returned as they are), sparse ids and only FIXED."""
    from clipscope.analysis.pairwise import _compact
    from clipscope.analysis.units import FIXED

    rng = np.random.default_rng(6)
    for units in (rng.integers(0, 50, 200), np.where(rng.random(200) < 0.2, FIXED, rng.integers(0, 300, 200)),
                  np.arange(100), rng.integers(0, 10 ** 12, 100), np.full(5, FIXED), np.zeros(0, np.int64)):
        units = np.asarray(units, np.int64)
        keep = units >= 0
        uniq, inv = np.unique(units[keep], return_inverse=True)
        want = np.full(len(units), FIXED)
        want[keep] = inv.ravel()
        got, n_units = _compact(units)
        assert n_units == len(uniq) and np.array_equal(got, want)


def test_sampled_subsets_take_whole_units_disjointly_and_never_fixed_rows():
    """Sampled uniformity's K subsets: disjoint, each of m whole units (a unit's rows all in one
    subset or none), no FIXED row, rows in increasing order."""
    from clipscope.analysis.pairwise import N_SUBSETS, _compact, _sampled_subsets
    from clipscope.analysis.units import FIXED

    rng = np.random.default_rng(7)
    for rows, ids, sample_pairs in ((5000, 1000, 2000), (3000, 3000, 500), (400, 50, 10 ** 6)):
        units = rng.integers(0, ids, rows)
        units[rng.random(rows) < 0.1] = FIXED
        units, n_units = _compact(units)
        subsets = _sampled_subsets(units, n_units, sample_pairs, seed=1)
        assert len(subsets) == N_SUBSETS
        taken = np.concatenate(subsets)
        assert len(np.unique(taken)) == len(taken) and (units[taken] >= 0).all()
        for rows_k in subsets:
            assert (np.diff(rows_k) > 0).all()
            chosen = np.unique(units[rows_k])
            assert np.array_equal(rows_k, np.flatnonzero(np.isin(units, chosen)))  # whole units
        assert len({len(np.unique(units[r])) for r in subsets[:-1]}) == 1  # m units each


@pytest.mark.parametrize("name", ALL)
def test_pair_sums_of_some_keys_equal_those_of_all(name):
    from clipscope.analysis import gap_sums
    from clipscope.analysis.units import Units

    I, T, pairs = layout("one_to_one" if name == "row_aligned" else name)
    units = Units.from_pairs(pairs, len(I), len(T))
    pu, attached = gap_sums.pair_layout(pairs, units)
    args = (gap_sums.Gather(I, pairs[:, 0]), gap_sums.Gather(T, pairs[:, 1]), pu, attached, units.n_units)
    every = gap_sums.pair_sums(*args, block=7)
    some = gap_sums.pair_sums(*args, block=7, keys=("count", "d2"))
    assert some.keys() == {"count", "d2"}
    for k in some:
        np.testing.assert_array_equal(some[k], every[k])
    assert every["count"].sum() == len(pairs)
    d2 = ((I[pairs[:, 0]].astype(np.float64) - T[pairs[:, 1]]) ** 2).sum(1)
    np.testing.assert_allclose(every["d2"], np.bincount(pu, weights=d2, minlength=units.n_units), rtol=1e-5, atol=1e-6)


def test_auto_streams_when_rows_exceed_the_budget_and_says_so(tmp_path, run_cli, monkeypatch):
    """2 x 2000 rows x 256 float32 (4.1 MB) need about 9 MB in memory; with a 7 MB budget and
    blocks of 100 rows, `auto` streams (about 6 MB) and says so on stderr and in the report."""
    import json

    import clipscope.tasks

    rng = np.random.default_rng(0)
    np.save(tmp_path / "pairs.npy", rng.normal(size=(2, 2000, 256)).astype(np.float32))
    cache = tmp_path / "c.h5"
    assert run_cli("import", "--pair-array", tmp_path / "pairs.npy", "--out", cache)[0] == 0
    monkeypatch.setattr(clipscope.tasks, "STREAM_BLOCK", 100)
    for command in ("gap", "uniformity"):
        monkeypatch.delenv("CLIPSCOPE_MEMORY_BUDGET", raising=False)
        code, _, err = run_cli(command, cache, "--out", tmp_path / f"{command}-mem", "--no-plots", "-q")
        assert code == 0 and "stream" not in err, err
        in_memory = json.loads((tmp_path / f"{command}-mem" / f"{command}.json").read_text())
        assert in_memory["config"]["engine"] == "local"
        monkeypatch.setenv("CLIPSCOPE_MEMORY_BUDGET", "7MB")
        code, _, err = run_cli(command, cache, "--out", tmp_path / command, "--no-plots", "-q")
        assert code == 0, err
        said = [ln for ln in err.splitlines() if "engine stream" in ln]
        assert len(said) == 1 and "7.0 MB available" in said[0] and "using about" in said[0], err
        report = json.loads((tmp_path / command / f"{command}.json").read_text())
        assert report["config"]["engine"] == "stream"
        assert any("engine stream (chosen" in n for n in report["notes"])
        same_numbers({k: m["value"] for k, m in in_memory["metrics"].items()},
                     {k: m["value"] for k, m in report["metrics"].items()})
    # drift holds both caches' matched rows: about 18 MB in memory, about 11 MB streamed
    monkeypatch.delenv("CLIPSCOPE_MEMORY_BUDGET", raising=False)
    code, _, err = run_cli("drift", cache, cache, "--out", tmp_path / "drift-mem", "--no-plots", "-q")
    assert code == 0 and "stream" not in err, err
    monkeypatch.setenv("CLIPSCOPE_MEMORY_BUDGET", "13MB")
    code, _, err = run_cli("drift", cache, cache, "--out", tmp_path / "drift", "--no-plots", "-q")
    assert code == 0 and len([ln for ln in err.splitlines() if "drift: engine stream (chosen" in ln]) == 1, err
    a, b = (json.loads((tmp_path / d / "drift.json").read_text()) for d in ("drift-mem", "drift"))
    assert (a["config"]["engine"], b["config"]["engine"]) == ("local", "stream")
    same_numbers({k: m["value"] for k, m in a["metrics"].items()}, {k: m["value"] for k, m in b["metrics"].items()})


@pytest.mark.parametrize("command", ["gap", "uniformity"])
def test_every_engine_refuses_what_would_not_fit_in_one_line(tmp_path, run_cli, monkeypatch, command):
    """In memory: the size, the budget, and --engine stream; streamed (the per-unit sums are
    O(rows) on every engine): the same line naming the streamed size. Nothing written."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pairs.npy", rng.normal(size=(2, 300, 16)).astype(np.float32))
    cache = tmp_path / "c.h5"
    assert run_cli("import", "--pair-array", tmp_path / "pairs.npy", "--out", cache)[0] == 0
    monkeypatch.setenv("CLIPSCOPE_MEMORY_BUDGET", "50kB")
    for engine, expect in (("local", "--engine stream"), ("stream", "streamed (in blocks: O(rows) sums"), ("auto", "streamed")):
        code, out, err = run_cli(command, cache, "--out", tmp_path / "run", "--no-plots", "--engine", engine)
        assert code == 1 and not (tmp_path / "run" / f"{command}.json").exists(), (engine, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, (engine, err)
        assert "300 image and 300 text rows x 16" in lines[0] and "50.0 kB" in lines[0] and expect in lines[0]
    monkeypatch.setenv("CLIPSCOPE_MEMORY_BUDGET", "lots")
    code, _, err = run_cli(command, cache, "--out", tmp_path / "run2", "--no-plots")
    assert code == 1 and "CLIPSCOPE_MEMORY_BUDGET='lots'" in err


def release_pair(tmp_path, name, *, new_dim=None):
    """Two caches of the same items: `new` is `old` rotated and perturbed (or, with ``new_dim``,
    a random projection to another width)."""
    from clipscope.linalg import l2_normalize

    old = cache_of(tmp_path, name)
    rng = np.random.default_rng(11)
    with Cache.open(old) as c:
        I, T, pairs = c.image_embeddings[:], c.text_embeddings[:], c.pairs
        image_ids, captions = c.image_ids, c.text_captions
    d = I.shape[1]
    Q = np.linalg.qr(rng.normal(size=(d, new_dim or d)))[0] if new_dim is None or new_dim <= d else \
        rng.normal(size=(d, new_dim))
    move = lambda X: l2_normalize((X @ Q + 0.3 * rng.normal(size=(len(X), Q.shape[1]))).astype(np.float32))  # noqa: E731
    new = tmp_path / f"{name}-new.h5"
    write_cache(new, image_embeddings=move(I), text_embeddings=move(T), pairs=pairs, image_ids=image_ids,
                text_captions=captions, attrs={"model": "test-new", "pretrained": "none"})
    return old, new


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("new_dim", (None, 24))
def test_streamed_drift_equals_in_memory(tmp_path, name, new_dim):
    """CKA, Procrustes, per-row drift, kNN overlap on sampled queries, backward compatibility,
    gap change and Mod-X's measures: the same from blocks of 7 rows read from both files."""
    from clipscope.tasks import drift

    old, new = release_pair(tmp_path, name, new_dim=new_dim)
    kw = dict(k=3, top=5, max_queries=9, seed=4)  # fewer queries than rows: the sampled path
    with Cache.open(old) as a, Cache.open(new) as b:
        memory = drift.evaluate(a, b, engine="local", **kw)
        streamed = drift.evaluate(a, b, engine="stream", block=7, **kw)
    assert memory.config.pop("engine") == "local" and streamed.config.pop("engine") == "stream"
    expected = {"cka_image", "knn_overlap_image", "cka_text", "gap_change"} | (
        {"procrustes_residual_image", "compat_new_text_old_image_recall@1", "similarity_kl"} if new_dim is None else set())
    assert expected <= memory.metrics.keys()
    assert "seeded sample of 9 query rows" in memory.metrics["knn_overlap_image"]["detail"]
    same_numbers(memory.metrics, streamed.metrics)
    same_numbers(memory.tables, streamed.tables)
    if new_dim is None:
        same_numbers(memory.plot_data["aligned_image"]["X"].tolist(), streamed.plot_data["aligned_image"]["X"].tolist())
