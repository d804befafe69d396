"""A ci95 covers the population value about 95% of the time, on every data layout.

Samples of n sampling units are drawn from the populations of tests/simulate.py: 1:1 pairs,
three captions per image (an image and its captions are one unit), and fixed class prompts
(ten class texts that are the same in every draw, so text-only statistics over them are
constants). The population values come from the definitions transcribed here by brute force
on a large sample, not from clipscope's code; relative alignment and linear separability
depend on n (a nearest-negative maximum, a fitted classifier), so their target is their
expectation at this n, the mean over the draws.

Every gated (directed) gap and uniformity metric must cover 0.90-0.99 with an interval no wider
than 1.5x the width the simulated spread implies (2 x 1.96 x sd). The fast version runs in CI;
the exhaustive one (more draws, n = 1000) is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import simulate as S

from clipscope.analysis import geometry as g
from clipscope.analysis.units import Units
from clipscope.metric_specs import describe

N_BIG = {"pairs": 40000, "captions": 20000, "classes": 40000}
N_KERNEL = 4000  # units for the brute-force kernel means (each unit's texts included)
PER_N = {"target": ("relative_alignment", "linear_separability")}


def _kernel_mean(A, B, valid, t=2.0, block=512):
    """mean of exp(-t ||a - b||^2) over the (a, b) where ``valid(rows of A, all of B)`` is True."""
    import torch

    total, count = 0.0, 0
    tB = torch.from_numpy(B.astype(np.float64))
    for i in range(0, len(A), block):
        S = torch.from_numpy(A[i:i + block].astype(np.float64)) @ tB.T
        K = torch.exp(-t * (2 - 2 * S)).numpy()
        m = valid(np.arange(i, min(len(A), i + block)))
        total += float(K[m].sum())
        count += int(m.sum())
    return total / count


def population(layout: str) -> dict:
    """Every metric's population value by its definition, on a large sample."""
    I, T, pairs = S.draw(layout, N_BIG[layout], 10**6)
    I64, T64 = I.astype(np.float64), T.astype(np.float64)
    truth = {"centroid_distance": float(np.linalg.norm(I64.mean(0) - T64.mean(0)))}
    a, b = I64[pairs[:, 0]], T64[pairs[:, 1]]
    cos = (a * b).sum(1)
    truth["paired_cosine"] = float(cos.mean())
    truth["paired_distance"] = float(np.linalg.norm(a - b, axis=1).mean())
    truth["paired_angle"] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
    truth["alignment"] = float(((a - b) ** 2).sum(1).mean())
    S_i = I64.sum(0)
    truth["cone_image"] = float((S_i @ S_i - (I64 * I64).sum()) / (len(I) * (len(I) - 1)))
    units = Units.from_pairs(pairs, len(I), len(T))
    if layout == "classes":  # fixed prompts: every pair of distinct prompts
        G = T64 @ T64.T
        truth["cone_text"] = float(G[~np.eye(len(T), dtype=bool)].mean())
    else:  # pairs of captions of different images
        tu = units.text_unit
        S_t = T64.sum(0)
        per = np.zeros((units.n_units, T.shape[1]))
        np.add.at(per, tu, T64)
        k = np.bincount(tu, minlength=units.n_units)
        truth["cone_text"] = float((S_t @ S_t - (per * per).sum()) / (len(T) ** 2 - (k * k).sum()))
    d = lambda c: 1 - (c + 1) / 2  # noqa: E731 (Schrodi et al.'s dissimilarity)
    truth["rmg"] = d(truth["paired_cosine"]) / ((d(truth["cone_image"]) + d(truth["cone_text"])) / 2
                                               + d(truth["paired_cosine"]))
    # kernel means on the first N_KERNEL units
    keep_t = units.text_unit < N_KERNEL if layout != "classes" else np.ones(len(T), bool)
    Ik, Tk = I64[:N_KERNEL], T64[keep_t]
    tu = units.text_unit[keep_t]
    kp = pairs[(pairs[:, 0] < N_KERNEL) & keep_t[pairs[:, 1]]]
    remap = -np.ones(len(T), np.int64)
    remap[np.flatnonzero(keep_t)] = np.arange(int(keep_t.sum()))
    paired = np.zeros((len(Ik), len(Tk)), bool)
    paired[kp[:, 0], remap[kp[:, 1]]] = True
    n_i = len(Ik)
    truth["uniformity_image"] = float(np.log(_kernel_mean(Ik, Ik, lambda r: np.arange(n_i)[None, :] != r[:, None])))
    same_t = lambda r: (tu[r][:, None] == tu[None, :]) & (tu[r][:, None] >= 0)  # noqa: E731
    truth["uniformity_text"] = float(np.log(_kernel_mean(Tk, Tk, lambda r: (np.arange(len(Tk))[None, :] != r[:, None])
                                                         & ~same_t(r))))
    truth["uniformity_cross"] = float(np.log(_kernel_mean(Tk, Ik, lambda r: ~paired.T[r])))
    if layout == "classes":  # the union's mix of image-image, image-prompt and prompt-prompt pairs depends on n:
        rr = _kernel_mean(Ik, Ik, lambda r: np.arange(n_i)[None, :] != r[:, None])  # weights are set per draw
        rf = _kernel_mean(Ik, Tk, lambda r: np.ones((len(r), len(Tk)), bool))
        ff = _kernel_mean(Tk, Tk, lambda r: np.arange(len(Tk))[None, :] != r[:, None])
        truth["_union_parts"] = (rr, rf, ff)
    else:  # pairs of rows of different units: an image and its own captions are one unit
        X = np.concatenate([Ik, Tk])
        xu = np.concatenate([np.arange(n_i), tu])
        truth["uniformity_union"] = float(np.log(_kernel_mean(
            X, X, lambda r: (np.arange(len(X))[None, :] != r[:, None]) & (xu[r][:, None] != xu[None, :]))))
    return truth


def union_at(truth: dict, n: int, n_prompts: int) -> float:
    rr, rf, ff = truth["_union_parts"]
    c_rr, c_rf, c_ff = n * (n - 1) / 2, n * n_prompts, n_prompts * (n_prompts - 1) / 2
    return float(np.log((c_rr * rr + c_rf * rf + c_ff * ff) / (c_rr + c_rf + c_ff)))


def estimates(I, T, pairs, seed):
    out = {}
    for k, v in {**g.gap_metrics(I, T, pairs, seed=seed), **g.uniformity_metrics(I, T, pairs, seed=seed)}.items():
        out[k] = (v["value"], v["ci95"], describe(k)[1])  # gated: a direction in its spec
    return out


@pytest.fixture(scope="module", params=["pairs", "captions", "classes"])
def truth(request):
    return request.param, population(request.param)


def coverage(layout, truth, n, draws):
    values, intervals, gated = {}, {}, {}
    for seed in range(draws):
        for k, (v, ci, hib) in estimates(*S.draw(layout, n, seed), seed).items():
            values.setdefault(k, []).append(v)
            intervals.setdefault(k, []).append(ci)
            gated[k] = hib is not None
    report = {}
    for k, vals in values.items():
        if not gated[k] or k == "linear_separability" and layout == "classes":
            continue
        cis = intervals[k]
        if any(c is None for c in cis):
            report[k] = ("no interval", None, None, None, None)
            continue
        v, c = np.asarray(vals, float), np.asarray(cis, float)
        target = v.mean() if k in PER_N["target"] else union_at(truth, n, S.CLASSES) \
            if k == "uniformity_union" and layout == "classes" else truth[k]
        cover = float(np.mean((c[:, 0] <= target) & (target <= c[:, 1])))
        implied = 2 * 1.959964 * v.std()
        width = float(np.mean(c[:, 1] - c[:, 0]))
        report[k] = (cover, width, implied, float(v.mean()), target)
    return report


def check(report, layout):
    for k, (cover, width, implied, *_) in report.items():
        if cover == "no interval":  # only where the layout supports none, and the report says why
            assert layout == "classes" and k == "relative_alignment", k
            continue
        if implied < 1e-9:  # a constant (fixed prompts): no width, and the population value itself
            assert width < 1e-9 and abs(report[k][3] - report[k][4]) < 1e-6, k
            continue
        assert 0.90 <= cover <= 0.99, (layout, k, cover)
        assert width <= 1.5 * implied, (layout, k, width / implied)


def test_ci95_coverage_on_every_layout(truth):
    layout, t = truth
    check(coverage(layout, t, 200, 120), layout)


@pytest.mark.slow
def test_ci95_coverage_on_every_layout_exhaustive(truth):
    layout, t = truth
    check(coverage(layout, t, 1000, 300), layout)


def test_the_plug_in_gap_is_biased_and_the_estimate_is_not(truth):
    """Why the reported gap is the bias-corrected estimate: over draws the plug-in overshoots
    the population gap by about tr Cov(z) / (2 n gap), the estimate does not."""
    layout, t = truth
    plug, est = [], []
    for seed in range(150):
        m = g.gap_metrics(*S.draw(layout, 100, seed), seed=seed)["centroid_distance"]
        plug.append(m["plug_in"])
        est.append(m["value"])
    se = np.std(plug) / np.sqrt(len(plug))
    assert np.mean(plug) - t["centroid_distance"] > 3 * se
    assert abs(np.mean(est) - t["centroid_distance"]) < 3 * se


def test_each_interval_contains_its_value():
    for layout in ("pairs", "captions", "classes"):
        I, T, pairs = S.draw(layout, 300, 0)
        m = {**g.gap_metrics(I, T, pairs), **g.uniformity_metrics(I, T, pairs)}
        for name, v in m.items():
            if v["ci95"] is not None:
                assert v["ci95"][0] <= v["value"] <= v["ci95"][1], (layout, name)


def test_a_zero_gap_has_an_interval_that_holds_it():
    """i.i.d. rows of one distribution for both modalities, three captions per image: the
    population gap is 0; the estimate's interval (its second-order term, near zero) contains
    the value it reports, and covers 0 about 95% of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    for seed in range(100):
        r = np.random.default_rng(seed)
        I = S._unit(r.normal(size=(200, 32)))
        T = S._unit(r.normal(size=(600, 32)))
        pairs = np.stack([np.repeat(np.arange(200), 3), np.arange(600)], 1)
        m = g.gap_metrics(I, T, pairs)["centroid_distance"]
        lo, hi = m["ci95"]
        assert lo <= m["value"] <= hi
        hits += lo <= 0.0 <= hi
    assert 0.90 <= hits / 100 <= 1.0
    del rng
