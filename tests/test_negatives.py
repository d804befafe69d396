"""Negatives are defined by identity (`/pairs`), never by row index, on every data layout:
1:1 pairs, several captions per image (COCO), many images sharing one text (class prompts).
Each metric is checked against a brute-force transcription of its definition."""

from __future__ import annotations

import numpy as np
import pytest

from clipscope.analysis import geometry as g
from clipscope.pairing import Pairing, sample_unpaired


def unit(x):
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def layout(name: str, seed: int = 0):
    """(I, T, pairs) with each distinct row once; pairs are (image row, text row)."""
    rng = np.random.default_rng(seed)
    d = 16
    if name == "one_to_one":
        n = 30
        pairs = np.stack([np.arange(n), rng.permutation(n)], 1)  # 1:1, not row-aligned
        I = unit(rng.normal(size=(n, d)))
        T = np.empty((n, d), np.float32)
        T[pairs[:, 1]] = unit(I[pairs[:, 0]] + 0.8 * rng.normal(size=(n, d)))
    elif name == "coco":  # 10 images, 3 captions each, captions close to their image
        n_img, per = 10, 3
        I = unit(rng.normal(size=(n_img, d)))
        pairs = np.array([(i, per * i + k) for i in range(n_img) for k in range(per)])
        T = unit(I[pairs[:, 0]] + 0.5 * rng.normal(size=(n_img * per, d)))
    elif name == "class_prompts":  # 30 images of 4 classes, one prompt per class
        n_img, C = 30, 4
        labels = np.arange(n_img) % C
        T = unit(rng.normal(size=(C, d)))
        I = unit(T[labels] + 0.7 * rng.normal(size=(n_img, d)))
        pairs = np.stack([np.arange(n_img), labels], 1)
    else:
        raise ValueError(name)
    return I, T, pairs.astype(np.int64)


LAYOUTS = ("one_to_one", "coco", "class_prompts")


def paired_mask(pairs, n_txt, n_img):
    m = np.zeros((n_txt, n_img), bool)
    m[pairs[:, 1], pairs[:, 0]] = True
    return m


def brute_cross_uniformity(I, T, pairs, t=2.0):
    D = ((T[:, None, :].astype(np.float64) - I[None, :, :]) ** 2).sum(-1)
    neg = ~paired_mask(pairs, len(T), len(I))
    return float(np.log(np.exp(-t * D[neg]).mean()))


def brute_relative_alignment(I, T, pairs):
    D = ((T[:, None, :].astype(np.float64) - I[None, :, :]) ** 2).sum(-1)
    neg = ~paired_mask(pairs, len(T), len(I))
    return np.array([D[t, i] - D[t][neg[t]].min() for i, t in pairs])


@pytest.mark.parametrize("name", LAYOUTS)
def test_cross_uniformity_excludes_every_pair(name):
    I, T, pairs = layout(name)
    for block in (4, 4096):
        got = g.cross_uniformity(T, I, pairs, block=block).log_with_ci()[0]
        assert got == pytest.approx(brute_cross_uniformity(I, T, pairs), abs=1e-6)


@pytest.mark.parametrize("name", LAYOUTS)
def test_relative_alignment_excludes_every_pair(name):
    I, T, pairs = layout(name)
    for block in (3, 4096):
        got = g.relative_alignment_rows(I, T, pairs, block=block)
        np.testing.assert_allclose(got, brute_relative_alignment(I, T, pairs), atol=1e-5)


@pytest.mark.parametrize("name", ("coco", "class_prompts"))
def test_row_index_negatives_would_be_wrong_here(name):
    """The mistake the issue describes, transcribed: negatives taken as "j != i" over the paired
    rows (Ip = I[pairs[:, 0]], Tp = T[pairs[:, 1]]). On these layouts it differs from the
    identity definition, and the sign of relative alignment can flip."""
    I, T, pairs = layout(name)
    Ip, Tp = I[pairs[:, 0]], T[pairs[:, 1]]
    D = ((Tp[:, None, :].astype(np.float64) - Ip[None, :, :]) ** 2).sum(-1)
    off = ~np.eye(len(pairs), dtype=bool)
    by_index = np.array([D[k, k] - D[k][off[k]].min() for k in range(len(pairs))]).mean()
    by_identity = brute_relative_alignment(I, T, pairs).mean()
    assert abs(by_index - by_identity) > 0.05
    if name == "coco":
        # A caption's own image reached through a sibling caption's row sits at distance ~0:
        # by index, relative alignment turns positive; by identity it is negative.
        assert by_index > 0 > by_identity


def test_one_to_one_values_equal_the_row_index_definition():
    """On 1:1 data (row-aligned, as imported pair arrays) both definitions agree."""
    rng = np.random.default_rng(5)
    I = unit(rng.normal(size=(40, 8)))
    T = unit(I + 0.9 * rng.normal(size=(40, 8)))
    ident = np.stack([np.arange(40)] * 2, 1)
    D = ((T[:, None, :].astype(np.float64) - I[None, :, :]) ** 2).sum(-1)
    off = ~np.eye(40, dtype=bool)
    assert g.cross_uniformity(T, I, ident).log_with_ci()[0] == pytest.approx(np.log(np.exp(-2 * D[off]).mean()), abs=1e-7)
    np.testing.assert_allclose(g.relative_alignment_rows(I, T, ident),
                               [D[k, k] - D[k][off[k]].min() for k in range(40)], atol=2e-6)


@pytest.mark.parametrize("name", LAYOUTS)
def test_sampled_cross_uniformity_is_unbiased(name):
    """Sampled mode (subsets of rows and columns) averages to the exact value over seeds."""
    I, T, pairs = layout(name, seed=1)
    exact = g.cross_uniformity(T, I, pairs).mean
    ests = [g.cross_uniformity(T, I, pairs, max_pairs=10, sample_pairs=40, seed=s).mean for s in range(300)]
    assert np.mean(ests) == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("name", LAYOUTS)
def test_uniformity_metrics_on_every_layout(name):
    I, T, pairs = layout(name)
    Ip, Tp = I[pairs[:, 0]], T[pairs[:, 1]]
    m = g.uniformity_metrics(I, T, pairs)
    assert m["uniformity_cross"]["value"] == pytest.approx(brute_cross_uniformity(I, T, pairs), abs=1e-6)
    assert m["relative_alignment"]["value"] == pytest.approx(brute_relative_alignment(I, T, pairs).mean(), abs=1e-5)
    D = 2 - 2 * (I.astype(np.float64) @ I.T)
    iu = np.triu_indices(len(I), 1)  # each distinct image row once, not once per caption
    assert m["uniformity_image"]["value"] == pytest.approx(np.log(np.exp(-2 * D[iu]).mean()), abs=1e-6)
    assert m["alignment"]["value"] == pytest.approx(((Ip.astype(np.float64) - Tp) ** 2).sum(1).mean(), abs=1e-6)
    # texts: every pair of text rows except two captions of one image (a class prompt pairs with all)
    from clipscope.analysis.units import Units

    tu = Units.from_pairs(pairs, len(I), len(T)).text_unit
    DT = 2 - 2 * (T.astype(np.float64) @ T.T)
    ok = np.triu(~((tu[:, None] == tu[None, :]) & (tu[:, None] >= 0)), 1)
    assert m["uniformity_text"]["value"] == pytest.approx(np.log(np.exp(-2 * DT[ok]).mean()), abs=1e-6)


@pytest.mark.parametrize("name", LAYOUTS)
def test_shift_sweep_counts_every_pair_among_sampled_rows(name):
    """recall@k at delta 0 equals brute force where any text paired with the image counts."""
    I, T, pairs = layout(name)
    sweep = g.shift_sweep(I, T, pairs, fractions=(0.0,), max_rows=len(pairs) // 2, seed=3)
    row = sweep["rows"][0]
    sub = pairs[np.sort(np.random.default_rng(3).choice(len(pairs), len(pairs) // 2, replace=False))]
    ir, tr = np.unique(sub[:, 0]), np.unique(sub[:, 1])
    match = paired_mask(pairs, len(T), len(I))[np.ix_(tr, ir)].T  # images x texts, among sampled rows
    S = I[ir] @ T[tr].T
    has = match.any(1)
    best = np.where(match, S, -np.inf).max(1)
    rank = (S > best[:, None] + 1e-5).sum(1)
    assert row["i2t_recall@1"] == pytest.approx((rank[has] < 1).mean())


def test_pairing_tiles_and_subsets():
    pairs = np.array([[0, 1], [2, 1], [1, 0], [2, 1]])  # a duplicate pair counts once
    p = Pairing.texts_by_images(pairs, n_images=3, n_texts=2)
    assert len(p) == 3 and p.degree_a().tolist() == [1, 2] and p.degree_b().tolist() == [1, 1, 1]
    r, c = p.in_tile(1, 2, 1, 3)
    assert r.tolist() == [0] and c.tolist() == [1]  # text 1 x image 2
    sub = p.subset(a_idx=np.array([1]), b_idx=np.array([0, 2]))
    assert list(zip(sub.a.tolist(), sub.b.tolist())) == [(0, 0), (0, 1)]
    assert not p.is_identity and Pairing(np.arange(3), np.arange(3), 3, 3).is_identity


@pytest.mark.parametrize("name", LAYOUTS)
def test_pairing_subset_is_the_mask_restricted_to_the_rows(name):
    """A subset's pairs are exactly the paired entries of the (texts x images) mask among the
    chosen rows and columns, renumbered to their positions (None: every row or column)."""
    I, T, pairs = layout(name)
    p = Pairing.texts_by_images(pairs, len(I), len(T))
    mask = paired_mask(pairs, len(T), len(I))
    rng = np.random.default_rng(4)
    for a_idx, b_idx in ((np.sort(rng.choice(len(T), len(T) // 2, replace=False)),
                          np.sort(rng.choice(len(I), len(I) // 3, replace=False))),
                         (None, np.sort(rng.choice(len(I), 5, replace=False))),
                         (np.array([len(T) - 1]), None), (np.zeros(0, np.int64), None), (None, np.zeros(0, np.int64))):
        sub = p.subset(a_idx, b_idx)
        rows = np.arange(len(T)) if a_idx is None else a_idx
        cols = np.arange(len(I)) if b_idx is None else b_idx
        want = np.argwhere(mask[np.ix_(rows, cols)])
        assert (sub.n_a, sub.n_b) == (len(rows), len(cols))
        assert np.array_equal(np.stack([sub.a, sub.b], 1).reshape(-1, 2), want)
        assert sub.degree_a().tolist() == mask[np.ix_(rows, cols)].sum(1).tolist()


def test_sample_unpaired_never_returns_a_pair():
    I, T, pairs = layout("coco")
    a, b = sample_unpaired(pairs, len(I), len(T), 500, np.random.default_rng(0))
    assert len(a) == 500
    assert not paired_mask(pairs, len(T), len(I))[b, a].any()


def test_analytic_shifted_means_equal_renormalising_every_row():
    from clipscope.analysis.geometry import shifted_means

    I, _, _ = layout("coco")
    rng = np.random.default_rng(2)
    g = rng.normal(size=I.shape[1]).astype(np.float32)
    steps = [-1.3, -0.2, 0.0, 0.4, 2.5]
    direct = [np.mean([(x + s * g) / np.linalg.norm(x + s * g) for x in I.astype(np.float64)], axis=0) for s in steps]
    np.testing.assert_allclose(shifted_means(I, g, steps, block=3), np.array(direct), atol=1e-6)


@pytest.mark.parametrize("name", LAYOUTS)
def test_one_pass_recall_equals_the_tiled_one(name, monkeypatch):
    from clipscope.analysis import retrieval

    I, T, pairs = layout(name, seed=4)
    fast = retrieval.cross_modal_recall(I, T, pairs)
    monkeypatch.setattr(retrieval, "ONE_PASS_MAX_ENTRIES", 0)  # force the tiled path
    tiled = retrieval.cross_modal_recall(I, T, pairs, block=7)
    assert fast == pytest.approx(tiled)


@pytest.mark.parametrize("name", LAYOUTS)
def test_analytic_shift_sweep_equals_renormalising_at_every_delta(name, monkeypatch):
    """The sweep's retrieval from one product (ShiftedSimilarities) against the direct sweep,
    which renormalises the shifted rows and multiplies again at each delta (#19)."""
    from clipscope.analysis import retrieval

    I, T, pairs = layout(name, seed=5)
    fast = g.shift_sweep(I, T, pairs, max_rows=len(pairs) // 2, seed=1)
    monkeypatch.setattr(retrieval, "ONE_PASS_MAX_ENTRIES", 0)  # the per-delta, tiled path
    direct = g.shift_sweep(I, T, pairs, max_rows=len(pairs) // 2, seed=1)
    assert len(fast["rows"]) == len(direct["rows"]) == 2 * len(g.SHIFT_FRACTIONS)
    for a, b in zip(fast["rows"], direct["rows"]):
        assert a == pytest.approx(b, abs=1e-9), (a, b)


def test_shifted_similarities_equal_the_shifted_rows_product():
    I, T, _ = layout("coco", seed=6)
    gap = (I.mean(0) - T.mean(0)).astype(np.float32)
    shifted = g.ShiftedSimilarities(I, T, gap)
    for s, t in ((0.0, 0.0), (0.4, 0.0), (0.2, 0.2), (-0.3, -0.3), (1.1, 0.55)):
        Ii = (I - s * gap) / np.linalg.norm(I - s * gap, axis=1, keepdims=True)
        Tt = (T + t * gap) / np.linalg.norm(T + t * gap, axis=1, keepdims=True)
        np.testing.assert_allclose(shifted.at(s, t).numpy(), Ii @ Tt.T, atol=2e-6)


@pytest.mark.parametrize("name", LAYOUTS)
def test_projection_sample_keeps_exactly_the_pairs_among_sampled_rows(name):
    from clipscope.report.plots import projection_sample

    I, T, pairs = layout(name)
    smp = projection_sample(I, T, pairs, seed=2, max_points=len(I) // 2)
    rng = np.random.default_rng(2)
    ii = np.sort(rng.choice(len(I), len(I) // 2, replace=False))
    tt = np.sort(rng.choice(len(T), min(len(T), len(I) // 2), replace=False))
    expected = {(a, b) for a, b in pairs.tolist() if a in set(ii.tolist()) and b in set(tt.tolist())}
    assert {(int(ii[a]), int(tt[b])) for a, b in smp["pairs"]} == expected and len(smp["pairs"]) == len(expected)
    assert np.array_equal(smp["I"], I[ii]) and np.array_equal(smp["T"], T[tt])
