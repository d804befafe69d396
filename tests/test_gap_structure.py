"""The gap's structure (#22): the paired difference as noise (MacCap), subregion crops, and the
direction between two groups (RAVE)."""

from __future__ import annotations

import numpy as np
import pytest

import clipscope
from clipscope.analysis import noise_model as nm
from clipscope.linalg import l2_normalize


def test_gaussian_differences_pass_the_normality_test_at_the_stated_rate():
    rng = np.random.default_rng(0)
    D = rng.normal(0.0, 0.05, size=(4000, 400))
    fit = nm.difference_moments(D, alpha=0.05)
    # 400 independent tests at level 0.05: the share passing is Binomial(400, 0.95)/400 (sd 0.011)
    assert 0.95 - 4 * 0.011 <= fit["gaussian_share"] <= 0.95 + 4 * 0.011
    assert fit["sigma"] == pytest.approx(0.05, rel=0.01)
    assert abs(np.mean(fit["excess_kurtosis"])) < 0.05 and abs(np.mean(fit["skew"])) < 0.02


def test_laplace_differences_do_not():
    rng = np.random.default_rng(1)
    D = rng.laplace(0.0, 0.05, size=(4000, 400))
    fit = nm.difference_moments(D, alpha=0.05)
    assert fit["gaussian_share"] < 0.01
    assert np.mean(fit["excess_kurtosis"]) == pytest.approx(3.0, abs=0.3)  # a Laplace's excess kurtosis is 3
    assert fit["sigma"] == pytest.approx(0.05 * np.sqrt(2), rel=0.02)  # its sd is b * sqrt(2)


def _planted_pairs(n=3000, d=64, sigma=0.02, seed=2):
    """1:1 pairs whose differences are a fixed gap plus Gaussian noise (before normalisation)."""
    rng = np.random.default_rng(seed)
    T = l2_normalize(rng.normal(size=(n, d)))
    gap = np.zeros(d)
    gap[0] = 0.3
    I = l2_normalize(T + gap + rng.normal(0, sigma, size=(n, d)))
    return I.astype(np.float32), T.astype(np.float32)


def test_noise_model_in_the_gap_report_on_three_layouts():
    I, T = _planted_pairs()
    # 1:1, several captions per image (each image paired with 3 texts), many images per text (10 classes)
    layouts = {
        "1:1": (I, T, None),
        "coco": (I[:1000], T[:3000], np.stack([np.repeat(np.arange(1000), 3), np.arange(3000)], 1)),
        "classes": (I, T[:10], np.stack([np.arange(3000), np.arange(3000) % 10], 1)),
    }
    for name, (imgs, txts, pairs) in layouts.items():
        cache = clipscope.from_arrays(imgs, txts, pairs)
        r = clipscope.run("gap", cache, bootstrap=0, noise_model=True, noise_max_pairs=2000, plots=False)
        m = {k: v.value for k, v in r.metrics.items()}
        assert m["noise_sigma"] > 0 and 0 <= m["noise_gaussian_share"] <= 1, name
        rows = r.tables["noise_model"]
        assert len(rows) == 64 and all(0 <= row["normaltest_p"] <= 1 for row in rows), name
        n_pairs = len(imgs) if pairs is None else len(pairs)
        assert r.config["noise_max_pairs"] == 2000 and f"{min(n_pairs, 2000)} pairs" in \
            r.metrics["noise_sigma"].description, name
        # sigma is the root mean per-dimension variance of x - t - g on the sample (transcribed)
        Ip = imgs if pairs is None else imgs[pairs[:, 0]]
        Tp = txts if pairs is None else txts[pairs[:, 1]]
        idx = nm.sample_pairs(len(Ip), 2000, 0)
        g = imgs.astype(np.float64).mean(0) - txts.astype(np.float64).mean(0)
        D = Ip[idx].astype(np.float64) - Tp[idx] - g
        assert m["noise_sigma"] == pytest.approx(np.sqrt(np.mean(D.var(axis=0, ddof=1))), rel=1e-6), name


def test_noise_injection_narrows_the_gap_it_models():
    """Texts that are images minus a gap minus Gaussian noise: adding noise of the fitted sigma
    to the texts makes them as spread as the images, and the paired cosine drops."""
    I, T = _planted_pairs(sigma=0.05)
    r = clipscope.run("gap", clipscope.from_arrays(I, T), bootstrap=0, noise_model=True, plots=False)
    inj = {row["metric"]: row for row in r.tables["noise_injection"]}
    assert inj["paired_cosine"]["noisy_text"] < inj["paired_cosine"]["text"]
    assert r.metrics["noisy_paired_cosine"].value == inj["paired_cosine"]["noisy_text"]
    assert 0.5 <= inj["linear_separability"]["noisy_text"] <= 1.0
