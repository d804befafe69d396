"""Geometry of the joint space: the modality gap and uniformity / alignment.

All functions take L2-normalised rows (``I`` image rows, ``T`` text rows; for paired metrics
row i of one pairs with row i of the other). :func:`gap_metrics` and :func:`uniformity_metrics`
compute a command's whole set and their intervals.

References
- Liang et al. 2022, "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
  Representation Learning" (NeurIPS): centroid distance, cone effect, embedding shift.
- Schrodi et al. 2025, "Two Effects, One Trigger: On the Modality Gap, Object Bias, and
  Information Imbalance in Contrastive Vision-Language Models" (ICLR): RMG, L2M, L2I.
- Fahim et al. 2024, "It's Not a Modality Gap: Characterizing and Addressing the Contrastive
  Gap": centroid cosine, cross-modal uniformity, linear separability.
- Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
  Uniformity on the Hypersphere" (ICML): alignment, uniformity.
- Oh et al. 2023, "Geodesic Multi-Modal Mixup for Robust Fine-Tuning" (NeurIPS): relative alignment.
"""

from __future__ import annotations

import math

import numpy as np

from clipscope.analysis import metric
from clipscope.analysis.pairwise import (DEFAULT_MAX_PAIRS, DEFAULT_SAMPLE_PAIRS, Z95, PairMean, gaussian_cross_mean,
                                         gaussian_pair_mean)
from clipscope.linalg import DEFAULT_BLOCK, column_sums, row_distances, row_dots, similarity_tiles
from clipscope.pairing import Pairing

RMG_MIN_DISTANCE = 1e-3
ROW_BLOCK = 65536


class Moments:
    """One modality's O(n d) sufficient statistics, from one pass over its rows in blocks:
    the column sums and each row's squared norm (both float64).

    The centroid, cone and bias-corrected gap metrics (and the bootstrap) are functions of
    these plus, for the intervals, each row's products with the two centroids
    (:meth:`project`), so `gap` reads the rows twice instead of once per metric. Sums of
    blocks combine by addition, which is what makes them computable shard by shard.
    """

    def __init__(self, X: np.ndarray, block: int = ROW_BLOCK):
        self.n = len(X)
        self.sums = np.zeros(X.shape[1])
        self.sq_norms = np.empty(self.n)
        for i in range(0, self.n, block):
            xb = X[i:i + block]
            self.sums += xb.sum(0, dtype=np.float64)
            self.sq_norms[i:i + block] = np.einsum("ij,ij->i", xb, xb, dtype=np.float64)

    @property
    def mean(self) -> np.ndarray:
        return self.sums / self.n

    def cone(self) -> float:
        """``(||sum_i x_i||^2 - sum_i ||x_i||^2) / (n (n - 1))``: the mean <x_i, x_j> over i != j."""
        return float((self.sums @ self.sums - self.sq_norms.sum()) / (self.n * (self.n - 1)))

    @staticmethod
    def project(X: np.ndarray, vectors: np.ndarray, block: int = ROW_BLOCK) -> np.ndarray:
        """``X @ vectors`` (vectors as columns) in row blocks: float32 products, float64 result."""
        v = np.asarray(vectors, np.float32)
        out = np.empty((len(X), v.shape[1]))
        for i in range(0, len(X), block):
            out[i:i + block] = X[i:i + block] @ v
        return out


def centroid_distance(I: np.ndarray, T: np.ndarray) -> float:
    """L2M, the modality gap: ``||mean(I) - mean(T)||`` (Liang et al. 2022; Schrodi et al. 2025)."""
    return float(np.linalg.norm(column_sums(I) / len(I) - column_sums(T) / len(T)))


def centroid_cosine(I: np.ndarray, T: np.ndarray) -> float:
    """Cosine between the modality centroids, ``<mean I, mean T> / (||mean I|| ||mean T||)`` (Fahim et al. 2024)."""
    return _cosine(column_sums(I) / len(I), column_sums(T) / len(T))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def paired_distance(I: np.ndarray, T: np.ndarray) -> float:
    """L2I: ``mean_i ||I_i - T_i||`` over pairs (Schrodi et al. 2025)."""
    return float(row_distances(I, T).mean())


def paired_cosine(I: np.ndarray, T: np.ndarray) -> float:
    """``mean_i <I_i, T_i>`` over pairs."""
    return float(row_dots(I, T).mean())


def pair_dots(I: np.ndarray, T: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65536) -> np.ndarray:
    """``<I_a[k], T_b[k]>`` for index arrays a, b, in blocks: no gathered copy of all the rows
    (and none at all when the pairs are row i with row i)."""
    if len(a) == len(I) == len(T) and np.array_equal(a, np.arange(len(I))) and np.array_equal(b, a):
        return row_dots(I, T)
    return np.concatenate([row_dots(I[a[i:i + block]], T[b[i:i + block]]) for i in range(0, len(a), block)]) \
        if len(a) else np.zeros(0)


def paired_angle(I: np.ndarray, T: np.ndarray) -> float:
    """Mean angle between paired rows in degrees, ``mean_i arccos <I_i, T_i>`` (defined by clipscope)."""
    return float(np.degrees(np.arccos(np.clip(row_dots(I, T), -1.0, 1.0))).mean())


def cone(X: np.ndarray) -> float:
    """Cone effect: mean cosine over ordered pairs i != j of one modality (Liang et al. 2022).

    ``(||sum_i x_i||^2 - n) / (n (n - 1))`` for unit rows, so O(n d) with no pairwise matrix.
    """
    return Moments(X).cone()


def relative_modality_gap(paired_cos: float, cone_image: float, cone_text: float) -> float:
    """RMG (Schrodi et al. 2025): gap between modalities relative to the spread within them.

    With the cosine dissimilarity ``d(c) = 1 - (c + 1) / 2`` and ``c_x`` the mean paired cosine::

        RMG = d(c_x) / ((d(cone_image) + d(cone_text)) / 2 + d(c_x))

    As the reference (lmb-freiburg/two-effects-one-trigger, analysis/gap_precompute.py
    ``compute_rmg``: ``torch.where(d > 0, d, 1e-3)``), ``d(c_x)`` is replaced by 1e-3 only where
    it is <= 0; a positive d below 1e-3 is kept.
    """
    d = lambda c: 1.0 - (c + 1.0) / 2.0  # noqa: E731
    dx = d(paired_cos) if d(paired_cos) > 0 else RMG_MIN_DISTANCE
    return float(dx / ((d(cone_image) + d(cone_text)) / 2.0 + dx))


def alignment(I: np.ndarray, T: np.ndarray, *, alpha: float = 2.0) -> float:
    """Alignment (Wang & Isola 2020): ``mean_i ||I_i - T_i||^alpha`` over pairs (alpha = 2)."""
    d2 = np.maximum(0.0, 2.0 - 2.0 * row_dots(I, T))
    return float((d2 ** (alpha / 2)).mean())


def uniformity(X, *, t: float = 2.0, **kw) -> PairMean:
    """Uniformity (Wang & Isola 2020, ``lunif`` in SsnL/align_uniform):
    ``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` over the distinct rows of X (t = 2).

    Returns the :class:`PairMean` of the kernel; ``.log_with_ci()`` gives the metric. For points
    uniform on S^(d-1) the value tends to ``-2t + t^2 / d`` as n grows (= -4 + 8/d at t = 2).
    ``X`` may be a tuple of arrays (their union, e.g. image and text rows).
    """
    return gaussian_pair_mean(X, t=t, **kw)


def cross_uniformity(T: np.ndarray, I: np.ndarray, pairs: np.ndarray, *, t: float = 2.0, **kw) -> PairMean:
    """Cross-modal uniformity (Fahim et al. 2024): ``log mean exp(-t ||T_a - I_b||^2)`` over
    every text row a and image row b that are not paired in ``pairs`` (image row, text row).

    Negatives are defined by identity, not by row index: on COCO-style data an image's other
    captions, and in a class-prompt layout every image of the prompt's class, are paired, not
    negatives. On 1:1 data this is the mean over a != b.
    """
    return gaussian_cross_mean(T, I, Pairing.texts_by_images(pairs, len(I), len(T)), t=t, **kw)


def relative_alignment_rows(I: np.ndarray, T: np.ndarray, pairs: np.ndarray, rows: np.ndarray | None = None, *,
                            block: int = DEFAULT_BLOCK, device: str = "cpu") -> np.ndarray:
    """Per-pair relative alignment (Oh et al. 2023), for each pair (image i, text t) in ``pairs``:

        ||t - I_i||^2 - min_{j not paired with t} ||t - I_j||^2

    i.e. ``2 (max_{j not paired with t} <t, I_j> - <t, I_i>)`` for unit rows. ``I`` and ``T``
    hold each distinct row once; "not paired" means not in ``pairs``, never "another row index",
    so an image paired with t through another caption's pair is not a negative. The maximum is
    found in blocks over all image rows. ``rows`` restricts the computation to those pairs (a
    sample). A text paired with every image has no negative: its pairs give NaN.
    """
    import torch

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    P = pairs if rows is None else pairs[np.asarray(rows)]
    q_texts, q_of_pair = np.unique(P[:, 1], return_inverse=True)
    pairing = Pairing.texts_by_images(pairs, len(I), len(T)).subset(a_idx=q_texts)
    Tq = T if len(q_texts) == len(T) else T[q_texts]  # every text queried (the usual case): no copy
    best = torch.full((len(q_texts),), -torch.inf, dtype=torch.float32, device=device)
    for i0, i1, j0, j1, s in similarity_tiles(Tq, I, block=block, device=device):
        r, c = pairing.in_tile(i0, i1, j0, j1)
        if len(r):
            s[torch.from_numpy(r).to(s.device), torch.from_numpy(c).to(s.device)] = -torch.inf  # paired: not a negative
        best[i0:i1] = torch.maximum(best[i0:i1], s.max(1).values)
    best_neg = best.cpu().numpy().astype(np.float64)
    best_neg[~np.isfinite(best_neg)] = np.nan
    own_cos = pair_dots(T, I, q_texts[q_of_pair.ravel()], P[:, 0])
    return 2.0 * (best_neg[q_of_pair.ravel()] - own_cos)


def linear_separability(I: np.ndarray, T: np.ndarray, *, seed: int = 0, max_rows: int = 20000) -> tuple[float, int]:
    """Test accuracy of a logistic regression telling image rows from text rows (Fahim et al. 2024).

    Stratified 80/20 split (seeded). Each modality is subsampled to ``max_rows`` rows to bound
    the fit's cost. Returns ``(accuracy, n_test)``; 0.5 means inseparable, 1.0 fully separable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    take = lambda X: X[np.sort(rng.choice(len(X), max_rows, replace=False))] if len(X) > max_rows else X  # noqa: E731
    Xi, Xt = take(I), take(T)
    X = np.concatenate([Xi, Xt]).astype(np.float64)
    y = np.concatenate([np.zeros(len(Xi), int), np.ones(len(Xt), int)])
    if min(len(Xi), len(Xt)) < 5:
        return float("nan"), 0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    clf = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
    return float(clf.score(Xte, yte)), len(yte)


# --------------------------------------------------------------------------- intervals


def cone_interval(X: np.ndarray) -> list[float] | None:
    """95% interval of the cone (a U-statistic with kernel <x, y>): Hoeffding's variance
    4 Var(h1) / n with h1(x_i) = <x_i, mean of the other rows>, normal approximation. The cone
    is unbiased for E<x, x'>, so the interval is about the reported value itself."""
    m = Moments(X)
    return _cone_interval(m, Moments.project(X, m.mean[:, None])[:, 0])


def _cone_interval(m: Moments, x_dot_mean: np.ndarray) -> list[float] | None:
    """:func:`cone_interval` from the moments and each row's product with its own centroid."""
    n = m.n
    if n < 3:
        return None
    h1 = (n * x_dot_mean - m.sq_norms) / (n - 1)
    value = m.cone()
    half = Z95 * math.sqrt(4 * h1.var(ddof=1) / n)
    return [value - half, value + half]


def centroid_gap_estimate(I: np.ndarray, T: np.ndarray, pairs: np.ndarray | None) -> tuple[float, list[float] | None]:
    """Bias-corrected modality gap ``||mu_I - mu_T||`` and its 95% interval.

    The plug-in ``||mean I - mean T||`` is biased upward by about ``tr Cov(I - T) / n``. Here
    ``||mu_I - mu_T||^2`` is estimated without bias by U-statistics,
    ``U_II + U_TT - 2 U_IT`` (mean <x, y> over distinct image rows, distinct text rows, and
    image-text combinations not paired in ``pairs``); its variance comes from the first-order
    (Hoeffding) projections, per pair when the pairing is 1:1 and per row of each modality
    otherwise; the interval for the square is mapped through sqrt (clipped at 0). Returns
    ``(estimate, interval)``; the interval contains the estimate.
    """
    if min(len(I), len(T)) < 3:
        return float("nan"), None
    mi, mt = Moments(I), Moments(T)
    g = mi.mean - mt.mean
    pairing = None if pairs is None or not len(pairs) else Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))
    paired_dot = 0.0 if pairing is None else float(pair_dots(I, T, pairing.a, pairing.b).sum())
    return _centroid_gap_estimate(mi, mt, Moments.project(I, g[:, None])[:, 0], Moments.project(T, g[:, None])[:, 0],
                                  pairing, paired_dot)


def _centroid_gap_estimate(mi: Moments, mt: Moments, i_dot_gap: np.ndarray, t_dot_gap: np.ndarray,
                           pairing: Pairing | None, paired_dot: float) -> tuple[float, list[float] | None]:
    """:func:`centroid_gap_estimate` from the moments, each row's product with the gap vector
    ``mean I - mean T``, and the sum of the paired rows' products."""
    n_i, n_t = mi.n, mt.n
    if min(n_i, n_t) < 3:
        return float("nan"), None
    Si, St = mi.sums, mt.sums
    u_ii, u_tt = mi.cone(), mt.cone()
    u_it = (Si @ St - paired_dot) / (n_i * n_t - (0 if pairing is None else len(pairing)))
    g2 = u_ii + u_tt - 2 * u_it
    g = mi.mean - mt.mean
    infl_i = 2 * (i_dot_gap - mi.mean @ g)
    infl_t = -2 * (t_dot_gap - mt.mean @ g)
    if pairing is not None and pairing.is_identity:
        var = (infl_i + infl_t).var(ddof=1) / n_i
    else:
        var = infl_i.var(ddof=1) / n_i + infl_t.var(ddof=1) / n_t
    half = Z95 * math.sqrt(var)
    root = lambda v: math.sqrt(max(0.0, v))  # noqa: E731
    return root(g2), [root(g2 - half), root(g2 + half)]


def _ci(samples: np.ndarray) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    if len(samples) < 10:
        return None
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def _poisson1_table(bits: int = 16) -> np.ndarray:
    """Poisson(1) by inverse CDF on 2**bits equally likely cells (float32 counts).

    Drawing 16-bit integers and looking them up is ~10x faster than ``Generator.poisson``,
    which dominated the bootstrap; the cells' midpoints put every count k <= 7 within 2**-16
    of its Poisson(1) probability (mean 1 and variance 1 to within 1e-4).
    """
    cells = (np.arange(2 ** bits) + 0.5) / 2 ** bits
    cdf = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])
    return np.searchsorted(cdf, cells).astype(np.float32)


_POISSON1 = _poisson1_table()


def poisson1_weights(rng: np.random.Generator, shape) -> np.ndarray:
    """Independent Poisson(1) counts (float32) of the given shape, see :func:`_poisson1_table`."""
    return _POISSON1[rng.integers(0, len(_POISSON1), size=shape, dtype=np.uint16)]


def _poisson_bootstrap(I, T, cos, dist, B: int, seed: int, moments: tuple[Moments, Moments] | None = None,
                       block: int = 16384) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the O(n d) gap metrics, by Poisson weights (resampling with
    independent Poisson(1) counts per row or pair; it streams in blocks of rows).

    Modality-level metrics resample the rows of each modality; paired metrics resample pairs
    (``cos``, ``dist``: each pair's cosine and distance). Only ``centroid_cosine`` and ``rmg``
    take their interval from these replicates (percentile); the others have analytic
    intervals (see :func:`gap_metrics`).
    """
    rng = np.random.default_rng(seed)
    mi, mt = moments or (Moments(I), Moments(T))

    def weighted(X, sq_norms):
        sums = np.zeros((B, X.shape[1]))
        w_tot = np.zeros(B)
        w2_tot = np.zeros(B)
        w_sq_self = np.zeros(B)  # sum_i w_i^2 ||x_i||^2: a row drawn w times pairs with none of its copies
        for i in range(0, len(X), block):
            w = poisson1_weights(rng, (B, min(block, len(X) - i)))
            sums += w @ X[i:i + block]  # a float32 GEMM per block, summed in float64
            w2 = w * w
            w_tot += w.sum(1, dtype=np.float64)
            w2_tot += w2.sum(1, dtype=np.float64)
            w_sq_self += w2 @ sq_norms[i:i + block]
        return sums, w_tot, w2_tot, w_sq_self

    si, wi, wi2, qi = weighted(I, mi.sq_norms)
    st, wt, wt2, qt = weighted(T, mt.sq_norms)
    # A replicate that draws fewer than two rows of a modality is undefined (NaN); _ci leaves it out.
    with np.errstate(invalid="ignore", divide="ignore"):
        ci, ct = si / wi[:, None], st / wt[:, None]
        out = {
            "centroid_distance": np.linalg.norm(ci - ct, axis=1),
            "centroid_cosine": (ci * ct).sum(1) / (np.linalg.norm(ci, axis=1) * np.linalg.norm(ct, axis=1)),
            # The U-statistic over distinct rows of the resample (copies of one row are not pairs).
            "cone_image": (np.einsum("bd,bd->b", si, si) - qi) / (wi * wi - wi2),
            "cone_text": (np.einsum("bd,bd->b", st, st) - qt) / (wt * wt - wt2),
        }
    # Paired metrics are means of per-pair values: reweight those.
    acc = {k: np.zeros(B) for k in ("cos", "dist", "d2", "w")}
    for i in range(0, len(cos), block):
        w = poisson1_weights(rng, (B, min(block, len(cos) - i))).astype(np.float64)
        acc["cos"] += w @ cos[i:i + block]
        acc["dist"] += w @ dist[i:i + block]
        acc["d2"] += w @ (dist[i:i + block] ** 2)
        acc["w"] += w.sum(1)
    out["paired_cosine"] = acc["cos"] / acc["w"]
    out["paired_distance"] = acc["dist"] / acc["w"]
    out["alignment"] = acc["d2"] / acc["w"]
    out["rmg"] = np.array([relative_modality_gap(c, a, b) for c, a, b in
                           zip(out["paired_cosine"], out["cone_image"], out["cone_text"])])
    return out


def paired_cos_dist(Ip: np.ndarray, Tp: np.ndarray, sq_norms_i: np.ndarray, sq_norms_t: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's cosine ``<I_i, T_i>`` and distance ``||I_i - T_i||`` (float64), in one pass:
    the distance from ``||a||^2 + ||b||^2 - 2 <a, b>`` with the rows' squared norms (the
    pairs' own, from :class:`Moments`), all in float64."""
    cos = row_dots(Ip, Tp)
    return cos, np.sqrt(np.maximum(0.0, sq_norms_i + sq_norms_t - 2.0 * cos))


# --------------------------------------------------------------------------- metric sets

DESCRIPTIONS = {
    "centroid_distance": ("||mean(I) - mean(T)||: the modality gap (L2M; Liang et al. 2022, Schrodi et al. 2025). "
                          "value: the plug-in, as the references; ci95 and estimate: the bias-corrected gap "
                          "(unbiased U-statistic for ||mu_I - mu_T||^2)", False),
    "centroid_cosine": ("cosine between the image and text centroids", None),
    "paired_distance": ("mean_i ||I_i - T_i|| over pairs (L2I)", False),
    "paired_cosine": ("mean_i <I_i, T_i> over pairs", True),
    "rmg": ("relative modality gap (Schrodi et al. 2025)", False),
    "cone_image": ("mean cosine between distinct image rows (cone effect)", False),
    "cone_text": ("mean cosine between distinct text rows (cone effect)", False),
    "linear_separability": ("test accuracy of a logistic regression telling image from text rows", False),
    "uniformity_image": ("log mean_{i<j} exp(-2||x_i - x_j||^2) over image rows", False),
    "uniformity_text": ("log mean_{i<j} exp(-2||x_i - x_j||^2) over text rows", False),
    "uniformity_union": ("uniformity over image and text rows together", False),
    "uniformity_cross": ("log mean exp(-2||T_a - I_b||^2) over every text a and image b not paired in /pairs "
                         "(Fahim et al. 2024)", False),
    "alignment": ("mean_i ||I_i - T_i||^2 over pairs", False),
    "relative_alignment": ("mean over pairs (i, t) of ||t - I_i||^2 - min_{j not paired with t} ||t - I_j||^2 "
                           "(Oh et al. 2023)", False),
}


def _m(name: str, value, ci=None, **extra) -> dict:
    desc, hib = DESCRIPTIONS[name]
    return metric(value, higher_is_better=hib, description=desc, ci95=ci, **extra)


def gap_metrics(I: np.ndarray, T: np.ndarray, Ip: np.ndarray | None, Tp: np.ndarray | None, *,
                bootstrap: int = 200, seed: int = 0, pairs: np.ndarray | None = None,
                moments: tuple[Moments, Moments] | None = None) -> dict[str, dict]:
    """The `gap` report's metrics.

    ``I``, ``T``: all image and all text rows (modality-level metrics); ``Ip``, ``Tp``: the
    paired rows (pair-level metrics; None when there are no pairs); ``pairs``: (image row, text
    row), for the centroid distance's bias correction (default: 1:1 when ``Ip`` is ``I``);
    ``moments``: the :class:`Moments` of I and T when the caller has them already.

    Intervals (95%), chosen for near-nominal coverage (tests/test_coverage.py simulates it):
    centroid distance: around its bias-corrected estimate (``estimate``; see
    :func:`centroid_gap_estimate`); cone: Hoeffding U-statistic variance; paired cosine and
    distance: the mean's normal interval over pairs; centroid cosine and RMG: Poisson bootstrap
    percentiles with ``bootstrap`` replicates (0 turns them off); separability: Wilson.
    """
    # Two passes over each modality's rows serve every metric below except separability:
    # the moments, then each row's products with both centroids and the gap vector (intervals).
    mi, mt = moments or (Moments(I), Moments(T))
    directions = np.stack([mi.mean, mt.mean, mi.mean - mt.mean], 1)
    proj_i, proj_t = Moments.project(I, directions), Moments.project(T, directions)
    values = {
        "centroid_distance": float(np.linalg.norm(mi.mean - mt.mean)),
        "centroid_cosine": _cosine(mi.mean, mt.mean),
        "cone_image": mi.cone(),
        "cone_text": mt.cone(),
    }
    cis = {"cone_image": _cone_interval(mi, proj_i[:, 0]), "cone_text": _cone_interval(mt, proj_t[:, 1])}
    if pairs is None and Ip is not None and len(Ip) == len(I) == len(T):
        pairs = np.stack([np.arange(len(I))] * 2, 1)
    cos = dist = None
    if Ip is not None:
        a, b = (slice(None), slice(None)) if pairs is None else (pairs[:, 0], pairs[:, 1])
        cos, dist = paired_cos_dist(Ip, Tp, mi.sq_norms[a], mt.sq_norms[b])
        values["paired_distance"] = float(dist.mean())
        values["paired_cosine"] = float(cos.mean())
        cis["paired_cosine"], cis["paired_distance"] = _mean_ci(cos), _mean_ci(dist)
        values["rmg"] = relative_modality_gap(values["paired_cosine"], values["cone_image"], values["cone_text"])
    pairing = None if pairs is None or not len(pairs) else Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))
    # Ip, Tp are the rows of `pairs`, so their products are the paired products the estimate needs.
    paired_dot = 0.0 if pairing is None else float(cos.sum() if cos is not None else
                                                     pair_dots(I, T, pairing.a, pairing.b).sum())
    estimate, cis["centroid_distance"] = _centroid_gap_estimate(
        mi, mt, proj_i[:, 2], proj_t[:, 2], pairing, paired_dot)
    boots = _poisson_bootstrap(I, T, cos, dist, bootstrap, seed, (mi, mt)) if (bootstrap and Ip is not None) else {}
    for k in ("centroid_cosine", "rmg"):
        if k in boots:
            cis[k] = _ci(boots[k])
    out = {k: _m(k, v, cis.get(k)) for k, v in values.items()}
    out["centroid_distance"]["estimate"] = estimate
    acc, n_test = linear_separability(I, T, seed=seed)
    out["linear_separability"] = _m("linear_separability", acc, wilson_interval(acc, n_test), n_test=n_test)
    if n_test == 0:
        out["linear_separability"]["why_undefined"] = (f"linear_separability needs at least 5 rows of each modality "
                                                       f"for its 80/20 split; there are {len(I)} image and {len(T)} "
                                                       "text rows")
    return {k: out[k] for k in DESCRIPTIONS if k in out}


def uniformity_metrics(I: np.ndarray, T: np.ndarray, Ip: np.ndarray | None, Tp: np.ndarray | None,
                       pairs: np.ndarray | None = None, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS,
                       sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                       device: str = "cpu") -> dict[str, dict]:
    """The `uniformity` report's metrics, exact in blocks up to ``max_pairs`` pairs, else sampled.

    ``I``, ``T``: every distinct image and text row; ``Ip``, ``Tp``: the rows of each pair;
    ``pairs``: (image row, text row), which defines the cross-modal negatives. Intervals:
    Hoeffding's U-statistic variance (exact mode) or the spread of disjoint random subsets
    (sampled mode) for the pair means, the standard error over pairs for the others.
    """
    kw = dict(t=t, max_pairs=max_pairs, sample_pairs=sample_pairs, seed=seed, block=block, device=device)
    out = {}

    def add_pair_mean(name, pm: PairMean):
        value, ci = pm.log_with_ci()
        out[name] = _m(name, value, ci, exact=pm.exact, pairs_used=pm.n_pairs)

    add_pair_mean("uniformity_image", uniformity(I, **kw))
    add_pair_mean("uniformity_text", uniformity(T, **kw))
    add_pair_mean("uniformity_union", uniformity((I, T), **kw))
    if Ip is not None:
        if pairs is None:  # row-aligned 1:1 rows
            pairs = np.stack([np.arange(len(Ip))] * 2, 1)
        add_pair_mean("uniformity_cross", cross_uniformity(T, I, pairs, **kw))
        d2 = np.maximum(0.0, 2.0 - 2.0 * row_dots(Ip, Tp))
        out["alignment"] = _m("alignment", d2.mean(), _mean_ci(d2))
        n = len(pairs)
        exact = n * len(I) <= max_pairs
        rows = None if exact else np.sort(np.random.default_rng(seed).choice(n, max(2, min(n, sample_pairs // len(I))),
                                                                              replace=False))
        ra = relative_alignment_rows(I, T, pairs, rows, block=block, device=device)
        undefined = int(np.isnan(ra).sum())
        ra = ra[np.isfinite(ra)]
        out["relative_alignment"] = _m("relative_alignment", ra.mean() if len(ra) else float("nan"), _mean_ci(ra),
                                       exact=exact, pairs_used=int(len(ra) * len(I)), undefined_pairs=undefined)
    return out


def wilson_interval(p: float, n: int) -> list[float] | None:
    """Wilson score 95% interval of a proportion p observed over n trials (sound at p = 0 or 1)."""
    if not n or not np.isfinite(p):
        return None
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _mean_ci(values: np.ndarray) -> list[float] | None:
    if len(values) < 3:
        return None
    m, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    return [float(m - Z95 * se), float(m + Z95 * se)]


# --------------------------------------------------------------------------- tables


def per_dimension_gap(I: np.ndarray, T: np.ndarray, top: int = 20, *, diff: np.ndarray | None = None) -> dict:
    """The dimensions carrying the gap: |mean_I - mean_T| per dimension, the top ``top``, and
    the share of the squared gap ||mean_I - mean_T||^2 they carry (``diff``: mean_I - mean_T,
    when the caller has it)."""
    diff = column_sums(I) / len(I) - column_sums(T) / len(T) if diff is None else diff
    sq = diff ** 2
    order = np.argsort(-np.abs(diff), kind="stable")[:top]
    total = sq.sum()
    return {
        "rows": [{"dim": int(d), "gap": float(abs(diff[d])), "signed_gap": float(diff[d]),
                  "share": float(sq[d] / total) if total > 0 else 0.0} for d in order],
        "top_share": float(sq[order].sum() / total) if total > 0 else 0.0,
        "all_abs_gap": np.abs(diff).tolist(),
    }


def shifted_means(X: np.ndarray, g: np.ndarray, steps, block: int = 16384) -> np.ndarray:
    """``mean_i (x_i + s g) / ||x_i + s g||`` for every step ``s``, as a (len(steps), D) array.

    ``||x + s g||^2 = ||x||^2 + 2 s <x, g> + s^2 ||g||^2``, so each step's mean is a weighted
    column sum, ``(X^T w_s + s g sum(w_s)) / n`` with ``w_s = 1 / ||x + s g||``: one product
    over the rows for all steps at once, in row blocks (no shifted copy of the rows).
    """
    steps = np.asarray(steps, np.float64)
    g64 = np.asarray(g, np.float64)
    acc = np.zeros((len(steps), X.shape[1]))
    wsum = np.zeros(len(steps))
    for i in range(0, len(X), block):
        xb = X[i:i + block]
        p, q = xb @ g64, np.einsum("ij,ij->i", xb, xb, dtype=np.float64)
        r = np.sqrt(np.maximum(q[:, None] + 2 * steps[None, :] * p[:, None] + steps[None, :] ** 2 * (g64 @ g64), 0))
        w = 1.0 / np.maximum(r, 1e-12)
        acc += w.T.astype(xb.dtype) @ xb  # a float32 GEMM for float32 rows; blocks summed in float64
        wsum += w.sum(0)
    return (acc + steps[:, None] * wsum[:, None] * g64[None, :]) / len(X)


class ShiftedSimilarities:
    """Cosines between image rows shifted by ``-s g`` and text rows shifted by ``+t g``, each
    renormalised, for any (s, t), from one product ``I T^T``:

        <x - s g, y + t g> = <x, y> + t <x, g> - s <g, y> - s t ||g||^2,

    divided by ``||x - s g|| ||y + t g||`` (norms from ``||x||^2``, ``<x, g>`` and ``||g||^2``).
    The shift sweep's retrieval thus costs one matrix product in all instead of one per
    delta; the values equal renormalise-then-multiply to float32 rounding (~1e-7).
    """

    def __init__(self, I: np.ndarray, T: np.ndarray, g: np.ndarray):
        import torch

        ti, tt = torch.from_numpy(np.ascontiguousarray(I, np.float32)), torch.from_numpy(np.ascontiguousarray(T, np.float32))
        tg = torch.from_numpy(np.asarray(g, np.float32))
        self.base = ti @ tt.T
        self.pi, self.pt = ti @ tg, tt @ tg
        self.qi, self.qt = (ti * ti).sum(1), (tt * tt).sum(1)
        self.gg = float(tg @ tg)

    def at(self, s: float, t: float):
        """The (images x texts) torch matrix of cosines after the shift (s, t)."""
        inv_i = (self.qi - 2 * s * self.pi + s * s * self.gg).clamp_min(1e-24).rsqrt()
        inv_t = (self.qt + 2 * t * self.pt + t * t * self.gg).clamp_min(1e-24).rsqrt()
        S = self.base + (t * self.pi)[:, None]
        S -= (s * self.pt)[None, :] + s * t * self.gg
        return S.mul_(inv_i[:, None]).mul_(inv_t[None, :])


def _renorm(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


SHIFT_FRACTIONS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def shift_sweep(I: np.ndarray, T: np.ndarray, pairs: np.ndarray | None, *, class_text: np.ndarray | None = None,
                labels: np.ndarray | None = None, fractions=SHIFT_FRACTIONS, deltas=None, max_rows: int = 5000,
                seed: int = 0, diff: np.ndarray | None = None) -> dict:
    """Embedding shift experiment (Liang et al. 2022, Sec. 4.2).

    With the unit gap direction ``g = (mean I - mean T) / ||mean I - mean T||`` and the gap
    ``L = ||mean I - mean T||``, shift by ``delta = f * L`` for each fraction f and renormalise:

    - image-only: ``I' = normalize(I - delta g)``, texts unchanged;
    - symmetric: ``I' = normalize(I - delta/2 g)``, ``T' = normalize(T + delta/2 g)``.

    f = 1 moves the centroids onto each other before renormalisation; negative f widens the
    gap. The symmetric variant is the reference's ``move_features`` (Weixin-Liang/Modality-Gap,
    shift_features.ipynb: text + delta/2 g, image - delta/2 g, renormalised), whose grid is the
    absolute ``np.arange(-5, 5, 0.25)``; pass ``deltas`` to sweep absolute deltas instead of
    fractions of the gap. At each delta: the remaining centroid distance; with pairs, image-to-text and
    text-to-image recall@1 and @5; with labels and class prompt embeddings, zero-shot
    accuracy. Pairs beyond ``max_rows`` are subsampled (seeded), which the result states.
    ``diff``: mean I - mean T, when the caller has it.
    """
    from clipscope.analysis.retrieval import (ONE_PASS_MAX_ENTRIES, cross_modal_recall, recall_from_similarities,
                                              zero_shot_accuracy)

    diff = column_sums(I) / len(I) - column_sums(T) / len(T) if diff is None else diff
    gap = float(np.linalg.norm(diff))
    g = (diff / gap).astype(np.float32) if gap > 0 else np.zeros_like(diff, np.float32)
    sub_pairs = None
    if pairs is not None and len(pairs):
        sub_pairs = pairs
        if len(pairs) > max_rows:
            sub_pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_rows, replace=False))]
        img_rows = np.unique(sub_pairs[:, 0])
        txt_rows = np.unique(sub_pairs[:, 1])
        # Every pair among the sampled rows counts as a match, not only the sampled ones: an
        # image's other caption that was drawn through another pair is a match, not a miss.
        local = Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T)).subset(img_rows, txt_rows)
        local_pairs = np.stack([local.a, local.b], 1)
    zs_rows = None
    if labels is not None and class_text is not None:
        zs_rows = np.arange(len(I))
        if len(I) > max_rows:
            zs_rows = np.sort(np.random.default_rng(seed + 1).choice(len(I), max_rows, replace=False))
    steps = [(float(d) / gap if gap > 0 else 0.0, float(d)) for d in deltas] if deltas is not None else \
        [(float(f), float(f) * gap) for f in fractions]
    plan = [(variant, f, delta, *((delta, 0.0) if variant == "image_only" else (delta / 2, delta / 2)))
            for variant in ("image_only", "symmetric") for f, delta in steps]
    # The centroid of every shifted, renormalised modality in one pass over its rows.
    mean_i = shifted_means(I, g, [-si for *_, si, _ in plan])
    mean_t = shifted_means(T, g, [st for *_, st in plan])
    shifted = None
    if sub_pairs is not None and len(img_rows) * len(txt_rows) <= ONE_PASS_MAX_ENTRIES:
        shifted = ShiftedSimilarities(I[img_rows], T[txt_rows], g)
    rows = []
    for k, (variant, f, delta, si, st) in enumerate(plan):
        row = {"variant": variant, "fraction": float(f), "delta": float(delta)}
        row["centroid_distance"] = float(np.linalg.norm(mean_i[k] - mean_t[k]))
        if shifted is not None:
            row.update(recall_from_similarities(shifted.at(si, st), local_pairs))
        elif sub_pairs is not None:
            row.update(cross_modal_recall(_renorm(I[img_rows] - si * g), _renorm(T[txt_rows] + st * g), local_pairs))
        if zs_rows is not None:
            C2 = _renorm(class_text + st * g)
            row["zero_shot_accuracy"] = zero_shot_accuracy(_renorm(I[zs_rows] - si * g), C2, labels[zs_rows])
        rows.append(row)
    return {"rows": rows, "gap": gap, "pairs_used": 0 if sub_pairs is None else int(len(sub_pairs)),
            "pairs_total": 0 if pairs is None else int(len(pairs))}
