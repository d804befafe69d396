"""The paired difference as noise (MacCap; CapDec's noise injection).

MacCap (Qiu, Ning & He 2024, "Mining Fine-Grained Image-Text Alignment for Zero-Shot Captioning
via Text-Only Training", AAAI) reports that the difference between paired image and text
features behaves like zero-mean Gaussian noise once the mean gap is removed, which is why
text-only training with Gaussian noise on the text features (CapDec, Nukrai, Mokady & Globerson
2022, EMNLP Findings) transfers to images. For pair k with L2-normalised rows x_k (image) and t_k (text) and the
modality centroids' difference g = mean(I) - mean(T)::

    d_k = x_k - t_k - g

Per dimension j: mean, standard deviation (ddof 1), skewness and excess kurtosis (scipy.stats
``skew`` and ``kurtosis``, biased moments, Fisher's definition), and D'Agostino-Pearson's K^2
test (``scipy.stats.normaltest``); a dimension is consistent with a Gaussian at level alpha when
its p-value is >= alpha (so about 1 - alpha of the dimensions of truly Gaussian noise are). The
isotropic scale sigma is the N(0, sigma^2 I) with the same total variance:
sigma^2 = mean_j sd_j^2.

Noise injection: the paired text rows plus N(0, sigma^2 I) (seeded), renormalised to the unit
sphere as every row of a cache is, scored with the gap metrics against the images; whether the
noise closes the gap is read off the centroid distance, paired cosine and linear separability
before and after, on the same pairs. It runs twice: with the sigma fitted here, and with MacCap's
published setting, a *variance* of 0.016 (``--noise_variance`` in Artanic30/MacCap ``main.py``;
its ``noise_injection`` adds ``randn * sqrt(variance)``, then renormalises), i.e. sigma = 0.126.

What is MacCap's and what is clipscope's: MacCap injects a fixed variance (and optionally a
modality offset) and never fits one; fitting sigma from the paired differences, the per-dimension
moments and normality tests, and the injection test are clipscope's own diagnostics built on its
observation. Note that once the centroid gap g is subtracted, the differences' mean over the
sample is zero in every dimension *by construction* (the mean of x - t is g over the pairs of a
1:1 sample); the "zero-mean" part of the claim is therefore not what is tested, the Gaussian shape
and the isotropy (one sigma for every dimension) are.
"""

from __future__ import annotations

import numpy as np

from clipscope.linalg import l2_normalize

MIN_PAIRS = 20  # the kurtosis part of normaltest needs n >= 20
MACCAP_VARIANCE = 0.016  # Artanic30/MacCap main.py --noise_variance: a variance (std 0.126)


def sample_pairs(n: int, max_pairs: int, seed: int) -> np.ndarray:
    idx = np.arange(n)
    if n > max_pairs:
        idx = np.sort(np.random.default_rng([seed, 11]).choice(n, max_pairs, replace=False))
    return idx


def difference_moments(D: np.ndarray, *, alpha: float = 0.05) -> dict:
    """Per-dimension moments and normality of the rows of ``D`` (pairs x dims), and the fitted
    isotropic and per-dimension noise scales."""
    from scipy import stats

    D = np.asarray(D, np.float64)
    sd = D.std(axis=0, ddof=1)
    _, p = stats.normaltest(D, axis=0)
    return {
        "mean": D.mean(axis=0), "sd": sd, "skew": stats.skew(D, axis=0), "excess_kurtosis": stats.kurtosis(D, axis=0),
        "normaltest_p": p, "gaussian_share": float(np.mean(p >= alpha)), "alpha": alpha,
        "sigma": float(np.sqrt(np.mean(sd ** 2))),
    }


def noise_model(Ip, Tp, gap: np.ndarray, *, alpha: float = 0.05, max_pairs: int = 20000, seed: int = 0) -> dict:
    """The noise model of the paired differences on a seeded sample of at most ``max_pairs``
    pairs (``Ip[k]``, ``Tp[k]``: pair k's rows; arrays or row readers); ``gap``: the modality
    centroids' difference over all rows. Returns the moments (see :func:`difference_moments`),
    the sample's pair indices and their differences."""
    idx = sample_pairs(len(Ip), max_pairs, seed)
    D = np.asarray(Ip[idx], np.float64) - np.asarray(Tp[idx], np.float64) - np.asarray(gap, np.float64)
    return {**difference_moments(D, alpha=alpha), "pairs_used": len(idx), "pairs_total": len(Ip), "index": idx,
            "differences": D}


def qq_points(D: np.ndarray, moments: dict, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Normal quantiles against the quantiles of the pooled standardised differences."""
    from scipy import stats

    z = ((D - moments["mean"]) / np.where(moments["sd"] > 0, moments["sd"], 1.0)).ravel()
    probs = (np.arange(n) + 0.5) / n
    return stats.norm.ppf(probs), np.quantile(z, probs)


def inject_noise(T: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Text rows plus N(0, sigma^2 I) noise (seeded), renormalised to the unit sphere."""
    rng = np.random.default_rng([seed, 12])
    return l2_normalize(np.asarray(T, np.float32) + rng.normal(0.0, sigma, size=np.shape(T)).astype(np.float32))
