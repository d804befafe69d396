"""The gap's O(n d) statistics as sums over row ranges (clipscope.analysis.gap_sums): any
partition of the rows (blocks, shards) gives the values of one pass over all of them, on every
data layout, bootstrap included; and the sums reproduce the direct definitions."""

from __future__ import annotations

import numpy as np
import pytest

from clipscope.analysis import gap_sums as gs
from clipscope.analysis import geometry as g
from test_negatives import LAYOUTS, layout


def aligned_layout():
    I, T, pairs = layout("one_to_one", seed=2)
    return I, T[pairs[:, 1]], np.stack([np.arange(len(I))] * 2, 1)  # row i pairs with row i


def ranges(n, cuts):
    edges = [0, *[c for c in cuts if 0 < c < n], n]
    return list(zip(edges[:-1], edges[1:]))


def split_sums(I, T, Ip, Tp, *, B, seed, identity, steps_of, cuts):
    r1_i = gs.combine([gs.modality_round1(I[a:b], a, B=B, seed=seed, stream=gs.IMAGE) for a, b in ranges(len(I), cuts)])
    r1_t = gs.combine([gs.modality_round1(T[a:b], a, B=B, seed=seed, stream=gs.TEXT) for a, b in ranges(len(T), cuts)])
    c = gs.Centroids.of(r1_i, r1_t, steps_of)
    r2_i = gs.combine([gs.modality_round2(I[a:b], c, text=False) for a, b in ranges(len(I), cuts)])
    r2_t = gs.combine([gs.modality_round2(T[a:b], c, text=True) for a, b in ranges(len(T), cuts)])
    p = gs.combine([gs.pair_sums(Ip[a:b], Tp[a:b], c, a, B=B, seed=seed, identity=identity)
                    for a, b in ranges(len(Ip), cuts)])
    return r1_i, r1_t, r2_i, r2_t, p, c


@pytest.mark.parametrize("name", LAYOUTS + ("aligned",))
def test_any_partition_of_the_rows_gives_the_same_metrics(name, monkeypatch):
    monkeypatch.setattr(gs, "BOOT_CHUNK", 7)  # ranges cut through bootstrap chunks
    I, T, pairs = aligned_layout() if name == "aligned" else layout(name)
    Ip, Tp = I[pairs[:, 0]], T[pairs[:, 1]]
    pairing, identity = g.gap_pairing(I, T, Ip, pairs)
    assert identity == (name == "aligned")
    steps_of = lambda gap: ([-0.3 * gap, 0.0], [0.2 * gap, 0.5 * gap])  # noqa: E731
    kw = dict(B=60, seed=4, identity=identity, steps_of=steps_of)
    whole = gs.local(I, T, Ip, Tp, **kw)
    split = split_sums(I, T, Ip, Tp, cuts=(3, 11, 12, 25), **kw)
    a = g.gap_metrics_from_sums(whole, n_pairs=len(pairing), identity=identity)
    b = g.gap_metrics_from_sums(split, n_pairs=len(pairing), identity=identity)
    assert a.keys() == b.keys() and {"centroid_cosine", "rmg", "cone_text", "paired_distance"} <= a.keys()
    for k in a:
        assert b[k]["value"] == pytest.approx(a[k]["value"], rel=1e-9, abs=1e-12), k
        assert (a[k]["ci95"] is None) == (b[k]["ci95"] is None), k
        if a[k]["ci95"] is not None:  # bootstrap intervals too (the same weight for every row), up to
            # the float32 rounding of its weighted-sum GEMMs over differently cut blocks
            assert b[k]["ci95"] == pytest.approx(a[k]["ci95"], rel=1e-6, abs=1e-9), k
    for x, y in zip(gs.sweep_centroids(whole), gs.sweep_centroids(split)):  # float32 GEMMs: ~1e-8
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-7)


def test_bootstrap_weights_of_a_range_are_the_whole_run_s(monkeypatch):
    monkeypatch.setattr(gs, "BOOT_CHUNK", 5)
    whole = gs.bootstrap_weights(1, gs.PAIRS, 0, 23, 8)
    parts = np.concatenate([gs.bootstrap_weights(1, gs.PAIRS, a, b, 8) for a, b in ranges(23, (4, 5, 13))], 1)
    assert whole.shape == (8, 23) and np.array_equal(whole, parts)
    assert not np.array_equal(whole, gs.bootstrap_weights(2, gs.PAIRS, 0, 23, 8))  # the seed matters


def test_poisson1_table_has_the_poisson_moments():
    w = gs._POISSON1.astype(np.float64)  # every cell equally likely
    assert w.mean() == pytest.approx(1.0, abs=1e-4) and w.var() == pytest.approx(1.0, abs=1e-3)
    assert (w == 0).mean() == pytest.approx(np.exp(-1), abs=2 ** -16)


@pytest.mark.parametrize("name", LAYOUTS)
def test_sums_reproduce_the_direct_definitions(name):
    I, T, pairs = layout(name)
    Ip, Tp = I[pairs[:, 0]], T[pairs[:, 1]]
    r1_i, r1_t, r2_i, r2_t, p, c = gs.local(I, T, Ip, Tp)
    I64, T64 = I.astype(np.float64), T.astype(np.float64)
    n = len(I)
    G = I64 @ I64.T
    assert gs.cone_value(r1_i) == pytest.approx(G[~np.eye(n, dtype=bool)].mean(), abs=1e-12)
    h1 = (G.sum(1) - np.diag(G)) / (n - 1)  # each row's mean cosine with the others
    assert gs.cone_halfwidth(r1_i, r2_i, 1.0) == pytest.approx(np.sqrt(4 * h1.var(ddof=1) / n), rel=1e-6)
    cos = (Ip.astype(np.float64) * Tp).sum(1)
    assert float(p["cos"]) == pytest.approx(cos.sum(), abs=1e-9)
    assert float(p["dist"]) == pytest.approx(np.linalg.norm(Ip.astype(np.float64) - Tp, axis=1).sum(), rel=1e-7)
    np.testing.assert_allclose(c.gap, I64.mean(0) - T64.mean(0), atol=1e-12)


@pytest.mark.parametrize("name", LAYOUTS)
def test_uniformity_from_row_readers_and_shards_equals_in_memory(name):
    """What `uniformity --engine ray` does, without Ray: rows read only when indexed (sampled
    mode reads its sample), alignment from pair sums over pair ranges, nearest negatives as the
    maximum over image ranges (one per shard)."""
    from clipscope.cache import from_arrays
    from clipscope.tasks import modality_rows

    I, T, pairs = layout(name, seed=7)
    cache = from_arrays(I, T, pairs)
    kw = dict(max_pairs=40, sample_pairs=120, seed=2)  # sampled estimates, as at scale
    arrays = g.uniformity_metrics(*modality_rows(cache), **kw)
    Ir, Tr = cache.rows("image"), cache.rows("text")
    pair_stats = gs.combine([gs.pair_sums(Ir[pairs[a:b, 0]], Tr[pairs[a:b, 1]], None, a) for a, b in ranges(len(pairs), (7,))])
    img_ranges = ranges(len(I), (4, 9))

    def best_negatives(Tq, pairing):
        return np.maximum.reduce([g.best_negative_cosines(Tq, cache.normalized_span("image", a, b), pairing, offset=a,
                                                          block=3) for a, b in img_ranges])

    lazy = g.uniformity_metrics(Ir, Tr, Ir.take(pairs[:, 0]), Tr.take(pairs[:, 1]), pairs, pair_stats=pair_stats,
                                best_negatives=best_negatives, **kw)
    assert lazy.keys() == arrays.keys() and {"alignment", "relative_alignment", "uniformity_cross"} <= lazy.keys()
    assert not arrays["uniformity_image"]["exact"]
    for k in arrays:
        assert lazy[k]["value"] == pytest.approx(arrays[k]["value"], rel=1e-6), k
        assert lazy[k]["ci95"] == pytest.approx(arrays[k]["ci95"], rel=1e-6), k


def test_ray_engine_needs_a_cache_file():
    import clipscope
    from clipscope.errors import ClipscopeError

    I, T, pairs = layout("coco")
    with pytest.raises(ClipscopeError, match="not a file"):
        clipscope.run("gap", clipscope.from_arrays(I, T, pairs), engine="ray", plots=False)


def test_gap_without_pairs_leaves_the_paired_metrics_out():
    import clipscope

    I, T, _ = layout("class_prompts")
    r = clipscope.run("gap", clipscope.from_arrays(I, T, np.zeros((0, 2), np.int64)), bootstrap=20, plots=False)
    assert set(r.metrics) == {"centroid_distance", "centroid_cosine", "cone_image", "cone_text", "linear_separability"}
    assert r.metrics["centroid_distance"].value == pytest.approx(np.linalg.norm(I.astype(np.float64).mean(0) - T.mean(0)),
                                                                 abs=1e-7)


def test_row_reader_reads_any_index_like_the_array(tmp_path):
    from clipscope.cache import Cache
    from clipscope.cli.main import main

    rng = np.random.default_rng(3)
    I, T = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "p.npy", np.stack([I, T]))
    assert main(["import", "--pair-array", str(tmp_path / "p.npy"), "--out", str(tmp_path / "c.h5")]) == 0
    with Cache.open(tmp_path / "c.h5") as cache:
        full, reader = cache.normalized_image_embeddings(), cache.rows("image")
        for idx in (np.array([5, 1, 1, 39]), np.arange(10, 20), np.array([], np.int64), slice(3, 30, 4)):
            assert np.array_equal(reader[idx], full[idx])
        sub = reader.take(np.array([7, 2, 9]))
        assert len(sub) == 3 and np.array_equal(sub[[2, 0]], full[[9, 7]])
        assert np.array_equal(cache.normalized_span("text", 4, 9), cache.normalized_text_embeddings()[4:9])
