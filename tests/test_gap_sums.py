"""The gap's O(n d) statistics as sums over row ranges (clipscope.analysis.gap_sums): any
partition of the rows (blocks, shards) gives the values and intervals of one pass over all of
them, on every data layout; and the sums reproduce the direct definitions."""

from __future__ import annotations

import numpy as np
import pytest
from test_negatives import LAYOUTS, layout

from clipscope.analysis import gap_sums as gs
from clipscope.analysis import geometry as g
from clipscope.analysis.units import Units, unit_groups


def aligned_layout():
    I, T, pairs = layout("one_to_one", seed=2)
    return I, T[pairs[:, 1]], np.stack([np.arange(len(I))] * 2, 1)  # row i pairs with row i


def ranges(n, cuts):
    edges = [0, *[c for c in cuts if 0 < c < n], n]
    return list(zip(edges[:-1], edges[1:]))


def split_sums(I, T, pairs, units, *, steps_of, cuts):
    U = units.n_units
    r1_i = gs.combine([gs.modality_round1(I[a:b], units.image_unit, a) for a, b in ranges(len(I), cuts)])
    r1_t = gs.combine([gs.modality_round1(T[a:b], units.text_unit, a, alone_from=units.n_images)
                       for a, b in ranges(len(T), cuts)])
    c = gs.Centroids.of(r1_i, r1_t, steps_of)
    r2_i = gs.combine([gs.modality_round2(I[a:b], c, units.image_unit, U, a, text=False) for a, b in ranges(len(I), cuts)])
    r2_t = gs.combine([gs.modality_round2(T[a:b], c, units.text_unit, U, a, text=True) for a, b in ranges(len(T), cuts)])
    pu, attached = gs.pair_layout(pairs, units)
    p = gs.combine([gs.pair_sums(I[pairs[a:b, 0]], T[pairs[a:b, 1]], pu, attached, U, a)
                    for a, b in ranges(len(pairs), cuts)])
    within = gs.within_units(T, unit_groups(units.text_unit), units.text_unit, U)
    return gs.GapSums(r1_i, r1_t, r2_i, r2_t, p, within, c, units)


@pytest.mark.parametrize("name", LAYOUTS + ("aligned",))
def test_any_partition_of_the_rows_gives_the_same_metrics(name):
    I, T, pairs = aligned_layout() if name == "aligned" else layout(name)
    units = Units.from_pairs(pairs, len(I), len(T))
    steps_of = lambda gap: ([-0.3 * gap, 0.0], [0.2 * gap, 0.5 * gap])  # noqa: E731
    whole = gs.local(I, T, pairs, units, steps_of=steps_of)
    split = split_sums(I, T, pairs, units, steps_of=steps_of, cuts=(3, 11, 12, 25))
    a = g.gap_metrics(I, T, pairs, units=units, sums=whole)
    b = g.gap_metrics(I, T, pairs, units=units, sums=split)
    assert a.keys() == b.keys() and {"centroid_cosine", "rmg", "cone_text", "paired_distance"} <= a.keys()
    for k in a:
        if a[k]["value"] is None:  # separability over fixed class prompts: left out on both
            assert b[k]["value"] is None, k
            continue
        assert b[k]["value"] == pytest.approx(a[k]["value"], rel=1e-9, abs=1e-12), k
        assert (a[k]["ci95"] is None) == (b[k]["ci95"] is None), k
        if a[k]["ci95"] is not None:  # per-unit influences: float32 products of rows with the centroids
            assert b[k]["ci95"] == pytest.approx(a[k]["ci95"], rel=1e-6, abs=1e-9), k
    for x, y in zip(whole.sweep_centroids(), split.sweep_centroids()):  # float32 GEMMs: ~1e-8
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", LAYOUTS)
def test_sums_reproduce_the_direct_definitions(name):
    """Cones over pairs of rows of different units, the bias-corrected gap as a U-statistic over
    units, the paired sums: each against a brute-force transcription of its definition."""
    I, T, pairs = layout(name)
    units = Units.from_pairs(pairs, len(I), len(T))
    m = g.gap_metrics(I, T, pairs, units=units)
    I64, T64 = I.astype(np.float64), T.astype(np.float64)
    G = I64 @ I64.T
    n = len(I)
    assert m["cone_image"]["value"] == pytest.approx(G[~np.eye(n, dtype=bool)].mean(), abs=1e-12)
    tu = units.text_unit
    GT = T64 @ T64.T
    valid = ~np.eye(len(T), dtype=bool) & ~((tu[:, None] == tu[None, :]) & (tu[:, None] >= 0))
    assert m["cone_text"]["value"] == pytest.approx(GT[valid].mean(), abs=1e-12)
    # the gap estimate: mean over ordered pairs of distinct units of <z_u, z_v>
    U, N, K = units.n_units, len(I), len(T)
    f = T64[tu < 0].sum(0) / K
    Z = np.tile(-f, (U, 1))
    Z[:N] += (U / N) * I64
    np.add.at(Z, tu[tu >= 0], -(U / K) * T64[tu >= 0])
    ZZ = Z @ Z.T
    want = np.sqrt(max(0.0, ZZ[~np.eye(U, dtype=bool)].mean()))
    assert m["centroid_distance"]["value"] == pytest.approx(want, abs=1e-9)
    assert m["centroid_distance"]["plug_in"] == pytest.approx(np.linalg.norm(I64.mean(0) - T64.mean(0)), abs=1e-9)
    cos = (I64[pairs[:, 0]] * T64[pairs[:, 1]]).sum(1)
    assert m["paired_cosine"]["value"] == pytest.approx(cos.mean(), abs=1e-9)
    assert m["paired_angle"]["value"] == pytest.approx(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean(), abs=1e-6)
    assert m["paired_distance"]["value"] == pytest.approx(
        np.linalg.norm(I64[pairs[:, 0]] - T64[pairs[:, 1]], axis=1).mean(), rel=1e-7)
    if name == "class_prompts":  # every text fixed: a constant
        assert m["cone_text"]["ci95"] == [m["cone_text"]["value"]] * 2


@pytest.mark.parametrize("name", LAYOUTS)
def test_uniformity_from_row_readers_and_shards_equals_in_memory(name):
    """What `uniformity --engine ray` does, without Ray: rows read only when indexed (sampled
    mode reads its sample), alignment from pair sums over pair ranges, nearest negatives as the
    maximum over image ranges (one per shard)."""
    from clipscope.cache import from_arrays
    from clipscope.tasks import modality_rows

    I, T, pairs = layout(name, seed=7)
    cache = from_arrays(I, T, pairs)
    units = Units.from_pairs(pairs, len(I), len(T))
    kw = dict(max_pairs=40, sample_pairs=120, seed=2)  # sampled estimates, as at scale
    aI, aT, _, _, apairs = modality_rows(cache)
    arrays = g.uniformity_metrics(aI, aT, apairs, **kw)
    Ir, Tr = cache.rows("image"), cache.rows("text")
    pu, attached = gs.pair_layout(pairs, units)
    pair_stats = gs.combine([gs.pair_sums(Ir[pairs[a:b, 0]], Tr[pairs[a:b, 1]], pu, attached, units.n_units, a)
                             for a, b in ranges(len(pairs), (7,))])
    img_ranges = ranges(len(I), (4, 9))

    def best_negatives(Tq, pairing):
        return np.maximum.reduce([g.best_negative_cosines(Tq, cache.normalized_span("image", a, b), pairing, offset=a,
                                                          block=3) for a, b in img_ranges])

    lazy = g.uniformity_metrics(Ir, Tr, pairs, pair_stats=pair_stats, best_negatives=best_negatives, **kw)
    assert lazy.keys() == arrays.keys() and {"alignment", "relative_alignment", "uniformity_cross"} <= lazy.keys()
    assert not arrays["uniformity_image"]["exact"]
    for k in arrays:
        assert lazy[k]["value"] == pytest.approx(arrays[k]["value"], rel=1e-6), k
        assert (lazy[k]["ci95"] is None) == (arrays[k]["ci95"] is None), k
        if arrays[k]["ci95"] is not None:
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
    r = clipscope.run("gap", clipscope.from_arrays(I, T, np.zeros((0, 2), np.int64)), plots=False)
    assert set(r.metrics) == {"centroid_distance", "centroid_cosine", "cone_image", "cone_text", "linear_separability"}
    assert r.metrics["centroid_distance"].extra["plug_in"] == pytest.approx(
        np.linalg.norm(I.astype(np.float64).mean(0) - T.mean(0)), abs=1e-7)


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
