"""A ci95 covers the population value about 95% of the time.

Samples of n pairs are drawn with replacement from a fixed population of 8,000 pairs in d = 64
(a gap between the modality means, pairs correlated), so the population values are known
exactly: centroid distance ||mu_I - mu_T||, paired cosine E<I, T>, cone E<x, x'> = ||mu||^2
and uniformity log E exp(-2 ||x - x'||^2) over independent draws (all N^2 combinations).
"""

from __future__ import annotations

import numpy as np
import pytest

from clipscope.analysis import geometry as g

N_POP, D, SEEDS = 8000, 64, 200


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(123)
    a, b = np.zeros(D), np.zeros(D)
    a[0], b[1] = 1.0, 1.0
    z = rng.normal(size=(N_POP, D))
    I = _unit(a + 0.35 * z)
    T = _unit(b + 0.25 * z + 0.3 * rng.normal(size=(N_POP, D)))
    mi, mt = I.astype(np.float64).mean(0), T.astype(np.float64).mean(0)
    import torch

    ti = torch.from_numpy(I.astype(np.float64))
    k = torch.exp(-2 * (2 - 2 * ti @ ti.T)).mean().item()
    truth = {"centroid_distance": float(np.linalg.norm(mi - mt)),
             "paired_cosine": float((I.astype(np.float64) * T).sum(1).mean()),
             "cone_image": float(mi @ mi), "uniformity_image": float(np.log(k))}
    return I, T, truth


def _intervals(I, T, pairs):
    out = {}
    _, out["centroid_distance"] = g.centroid_gap_estimate(I, T, pairs)
    out["paired_cosine"] = g._mean_ci(g.row_dots(I, T))
    out["cone_image"] = g.cone_interval(I)
    out["uniformity_image"] = g.uniformity(I).log_with_ci()[1]
    return out


@pytest.mark.parametrize("n", [200, 1000])
def test_ci95_coverage_is_near_nominal(population, n):
    I, T, truth = population
    hits = {k: 0 for k in truth}
    for seed in range(SEEDS):
        idx = np.random.default_rng(seed).integers(0, N_POP, n)
        Is, Ts = I[idx], T[idx]
        for k, (lo, hi) in _intervals(Is, Ts, np.stack([np.arange(n)] * 2, 1)).items():
            hits[k] += lo <= truth[k] <= hi
    coverage = {k: v / SEEDS for k, v in hits.items()}
    for k, c in coverage.items():
        assert 0.90 <= c <= 0.99, (n, k, coverage)


def test_the_plug_in_gap_is_biased_and_the_estimate_is_not(population):
    """Why the interval is about the bias-corrected estimate: over seeds the plug-in overshoots
    the population gap by about tr Cov(I - T) / (2 n gap), the estimate does not."""
    I, T, truth = population
    n = 200
    plug, est = [], []
    for seed in range(SEEDS):
        idx = np.random.default_rng(seed).integers(0, N_POP, n)
        plug.append(g.centroid_distance(I[idx], T[idx]))
        est.append(g.centroid_gap_estimate(I[idx], T[idx], np.stack([np.arange(n)] * 2, 1))[0])
    se = np.std(plug) / np.sqrt(SEEDS)
    assert np.mean(plug) - truth["centroid_distance"] > 4 * se
    assert abs(np.mean(est) - truth["centroid_distance"]) < 3 * se


def test_each_interval_contains_its_estimate(population):
    I, T, _ = population
    idx = np.random.default_rng(0).integers(0, N_POP, 300)
    Ip, Tp = I[idx], T[idx]
    m = g.gap_metrics(Ip, Tp, Ip, Tp, bootstrap=100, seed=0)
    for name, v in m.items():
        if v["ci95"] is not None:
            centre = v.get("estimate", v["value"])
            assert v["ci95"][0] <= centre <= v["ci95"][1], name
