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

from clipscope.analysis import gap_sums, metric
from clipscope.analysis.pairwise import (DEFAULT_MAX_PAIRS, DEFAULT_SAMPLE_PAIRS, Z95, PairMean, gaussian_cross_mean,
                                         gaussian_pair_mean)
from clipscope.linalg import DEFAULT_BLOCK, column_sums, row_distances, row_dots, similarity_tiles
from clipscope.pairing import Pairing

RMG_MIN_DISTANCE = 1e-3


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
    if (isinstance(I, np.ndarray) and isinstance(T, np.ndarray) and len(a) == len(I) == len(T)
            and np.array_equal(a, np.arange(len(I))) and np.array_equal(b, a)):
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
    return gap_sums.cone_value(gap_sums.modality_round1(X))


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
                            block: int = DEFAULT_BLOCK, device: str = "cpu", best_negatives=None) -> np.ndarray:
    """Per-pair relative alignment (Oh et al. 2023), for each pair (image i, text t) in ``pairs``:

        ||t - I_i||^2 - min_{j not paired with t} ||t - I_j||^2

    i.e. ``2 (max_{j not paired with t} <t, I_j> - <t, I_i>)`` for unit rows. ``I`` and ``T``
    hold each distinct row once; "not paired" means not in ``pairs``, never "another row index",
    so an image paired with t through another caption's pair is not a negative. The maximum is
    found in blocks over all image rows (by :func:`best_negative_cosines`, or by
    ``best_negatives(Tq, pairing)`` when given, e.g. shard by shard on Ray). ``rows``
    restricts the computation to those pairs (a sample). A text paired with every image has
    no negative: its pairs give NaN.
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    P = pairs if rows is None else pairs[np.asarray(rows)]
    q_texts, q_of_pair = np.unique(P[:, 1], return_inverse=True)
    pairing = Pairing.texts_by_images(pairs, len(I), len(T)).subset(a_idx=q_texts)
    every_text = len(q_texts) == len(T) and isinstance(T, np.ndarray)
    Tq = T if every_text else T[q_texts]  # every text queried (the usual case): no copy
    if best_negatives is None:
        best_neg = best_negative_cosines(Tq, I, pairing, block=block, device=device)
    else:
        best_neg = best_negatives(Tq, pairing)
    best_neg = best_neg.astype(np.float64)
    best_neg[~np.isfinite(best_neg)] = np.nan
    own_cos = pair_dots(T, I, q_texts[q_of_pair.ravel()], P[:, 0])
    return 2.0 * (best_neg[q_of_pair.ravel()] - own_cos)


def best_negative_cosines(Tq: np.ndarray, I: np.ndarray, pairing: Pairing, *, offset: int = 0,
                          block: int = DEFAULT_BLOCK, device: str = "cpu") -> np.ndarray:
    """For each query row, the largest cosine with an image row it is not paired with (-inf
    when none): ``I`` holds image rows offset..offset+len(I) (one shard's), ``pairing`` pairs
    query rows with global image rows. Shards combine by maximum."""
    import torch

    best = torch.full((len(Tq),), -torch.inf, dtype=torch.float32, device=device)
    for i0, i1, j0, j1, s in similarity_tiles(Tq, I, block=block, device=device):
        r, c = pairing.in_tile(i0, i1, j0 + offset, j1 + offset)
        if len(r):
            s[torch.from_numpy(r).to(s.device), torch.from_numpy(c).to(s.device)] = -torch.inf  # paired: not a negative
        best[i0:i1] = torch.maximum(best[i0:i1], s.max(1).values)
    return best.cpu().numpy()


def linear_separability(I: np.ndarray, T: np.ndarray, *, seed: int = 0, max_rows: int = 20000) -> tuple[float, int]:
    """Test accuracy of a logistic regression telling image rows from text rows (Fahim et al. 2024).

    Stratified 80/20 split (seeded). Each modality is subsampled to ``max_rows`` rows to bound
    the fit's cost. Returns ``(accuracy, n_test)``; 0.5 means inseparable, 1.0 fully separable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    # Indexed even when all rows are kept, so that I and T may be row readers (clipscope.cache.RowReader).
    take = lambda X: X[np.sort(rng.choice(len(X), max_rows, replace=False)) if len(X) > max_rows else  # noqa: E731
                       np.arange(len(X))]
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
    r1 = gap_sums.modality_round1(X)
    mean = r1["sums"] / r1["n"]
    half = gap_sums.cone_halfwidth(r1, gap_sums.modality_round2(X, gap_sums.Centroids(mean, mean), text=False), Z95)
    value = gap_sums.cone_value(r1)
    return None if half is None else [value - half, value + half]


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
    pairing = None if pairs is None or not len(pairs) else Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))
    identity = pairing is not None and pairing.is_identity
    Ip, Tp = (None, None) if pairing is None else (I[pairs[:, 0]], T[pairs[:, 1]])
    r1_i, r1_t, r2_i, r2_t, p, _ = gap_sums.local(I, T, Ip, Tp, identity=identity)
    return gap_sums.gap_estimate(r1_i, r1_t, r2_i, r2_t, p, 0 if pairing is None else len(pairing), identity, Z95)


def _ci(samples: np.ndarray) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    if len(samples) < 10:
        return None
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


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
                bootstrap: int = 200, seed: int = 0, pairs: np.ndarray | None = None, sums=None,
                pairing: tuple[Pairing | None, bool] | None = None) -> dict[str, dict]:
    """The `gap` report's metrics.

    ``I``, ``T``: all image and all text rows (modality-level metrics); ``Ip``, ``Tp``: the
    paired rows (pair-level metrics; None when there are no pairs); ``pairs``: (image row, text
    row), for the centroid distance's bias correction (default: 1:1 when ``Ip`` is ``I``);
    ``sums``: the :mod:`clipscope.analysis.gap_sums` of these rows when the caller has them
    (computed shard by shard, say); otherwise they are computed here, two passes over the rows;
    ``pairing``: :func:`gap_pairing` of these rows, when the caller has it.

    Intervals (95%), chosen for near-nominal coverage (tests/test_coverage.py simulates it):
    centroid distance: around its bias-corrected estimate (``estimate``; see
    :func:`centroid_gap_estimate`); cone: Hoeffding U-statistic variance; paired cosine and
    distance: the mean's normal interval over pairs; centroid cosine and RMG: Poisson bootstrap
    percentiles with ``bootstrap`` replicates (0 turns them off); separability: Wilson.
    """
    pairing, identity = pairing or gap_pairing(I, T, Ip, pairs)
    if sums is None:
        sums = gap_sums.local(I, T, Ip, Tp, B=bootstrap if Ip is not None else 0, seed=seed, identity=identity)
    out = gap_metrics_from_sums(sums, n_pairs=0 if pairing is None else len(pairing), identity=identity)
    acc, n_test = linear_separability(I, T, seed=seed)
    out["linear_separability"] = _m("linear_separability", acc, wilson_interval(acc, n_test), n_test=n_test)
    if n_test == 0:
        out["linear_separability"]["why_undefined"] = (f"linear_separability needs at least 5 rows of each modality "
                                                       f"for its 80/20 split; there are {len(I)} image and {len(T)} "
                                                       "text rows")
    return {k: out[k] for k in DESCRIPTIONS if k in out}


def gap_pairing(I, T, Ip, pairs: np.ndarray | None) -> tuple[Pairing | None, bool]:
    """The pairing of `gap`'s rows (1:1 by row when ``Ip`` is given without ``pairs`` and the
    counts agree), and whether it is the identity (row i with row i)."""
    if pairs is None and Ip is not None and len(Ip) == len(I) == len(T):
        pairs = np.stack([np.arange(len(I))] * 2, 1)
    pairing = None if pairs is None or not len(pairs) else Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))
    return pairing, pairing is not None and pairing.is_identity


def gap_metrics_from_sums(sums, *, n_pairs: int, identity: bool) -> dict[str, dict]:
    """Every `gap` metric but separability from the combined sums ``(round 1 image, round 1
    text, round 2 image, round 2 text, pair sums or None, centroids)`` of :mod:`gap_sums`."""
    r1_i, r1_t, r2_i, r2_t, p, c = sums
    values = {
        "centroid_distance": float(np.linalg.norm(c.gap)),
        "centroid_cosine": _cosine(c.mean_i, c.mean_t),
        "cone_image": gap_sums.cone_value(r1_i),
        "cone_text": gap_sums.cone_value(r1_t),
    }
    cis = {}
    for key, r1, r2 in (("cone_image", r1_i, r2_i), ("cone_text", r1_t, r2_t)):
        half = gap_sums.cone_halfwidth(r1, r2, Z95)
        cis[key] = None if half is None else [values[key] - half, values[key] + half]
    if p is not None:
        n = float(p["n"])
        values["paired_distance"] = float(p["dist"] / n)
        values["paired_cosine"] = float(p["cos"] / n)
        cis["paired_cosine"] = gap_sums.mean_interval(float(p["cos"]), float(p["cos2"]), n, Z95)
        cis["paired_distance"] = gap_sums.mean_interval(float(p["dist"]), float(p["dist2"]), n, Z95)
        values["rmg"] = relative_modality_gap(values["paired_cosine"], values["cone_image"], values["cone_text"])
    estimate, cis["centroid_distance"] = gap_sums.gap_estimate(r1_i, r1_t, r2_i, r2_t, p, n_pairs, identity, Z95)
    if p is not None and "boot_sums" in r1_i:
        boots = gap_sums.bootstrap_replicates(r1_i, r1_t, p)
        boots["rmg"] = np.array([relative_modality_gap(pc, a, b) for pc, a, b in
                                 zip(boots["paired_cosine"], boots["cone_image"], boots["cone_text"])])
        for k in ("centroid_cosine", "rmg"):
            cis[k] = _ci(boots[k])
    out = {k: _m(k, v, cis.get(k)) for k, v in values.items()}
    out["centroid_distance"]["estimate"] = estimate
    return out


def uniformity_metrics(I: np.ndarray, T: np.ndarray, Ip: np.ndarray | None, Tp: np.ndarray | None,
                       pairs: np.ndarray | None = None, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS,
                       sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                       device: str = "cpu", pair_stats: dict | None = None, best_negatives=None) -> dict[str, dict]:
    """The `uniformity` report's metrics, exact in blocks up to ``max_pairs`` pairs, else sampled.

    ``I``, ``T``: every distinct image and text row; ``Ip``, ``Tp``: the rows of each pair;
    ``pairs``: (image row, text row), which defines the cross-modal negatives. Intervals:
    Hoeffding's U-statistic variance (exact mode) or the spread of disjoint random subsets
    (sampled mode) for the pair means, the standard error over pairs for the others.
    The rows may be :class:`clipscope.cache.RowReader` objects: sampled estimates then read
    only their sample. ``pair_stats`` (the pairs' :func:`gap_sums.pair_sums`) and
    ``best_negatives`` (see :func:`relative_alignment_rows`) let the O(n d) parts run
    elsewhere, e.g. shard by shard on Ray.
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
        p = pair_stats if pair_stats is not None else gap_sums.pair_sums(Ip, Tp)
        n_p = float(p["n"])  # ||I_i - T_i||^2 from the rows' norms and products, in float64
        out["alignment"] = _m("alignment", float(p["dist2"]) / n_p,
                              gap_sums.mean_interval(float(p["dist2"]), float(p["dist4"]), n_p, Z95))
        n = len(pairs)
        exact = n * len(I) <= max_pairs
        rows = None if exact else np.sort(np.random.default_rng(seed).choice(n, max(2, min(n, sample_pairs // len(I))),
                                                                              replace=False))
        ra = relative_alignment_rows(I, T, pairs, rows, block=block, device=device, best_negatives=best_negatives)
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
    # At p = 0 (or 1) the bound is exactly 0 (1); rounding leaves ~1e-17, which would exclude p.
    return [min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))]


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
    parts = [gap_sums.shifted_sums(X[i:i + block], g, steps) for i in range(0, len(X), block)]
    sums = {"shift_acc": sum(a for a, _ in parts), "shift_w": sum(w for _, w in parts)}
    return gap_sums.shifted_centroids({"n": len(X)}, sums, g, steps)


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


def sweep_plan(gap: float, fractions=SHIFT_FRACTIONS, deltas=None) -> list[tuple]:
    """``(variant, fraction, delta, image shift, text shift)`` for every step of the sweep."""
    steps = [(float(d) / gap if gap > 0 else 0.0, float(d)) for d in deltas] if deltas is not None else \
        [(float(f), float(f) * gap) for f in fractions]
    return [(variant, f, delta, *((delta, 0.0) if variant == "image_only" else (delta / 2, delta / 2)))
            for variant in ("image_only", "symmetric") for f, delta in steps]


def sweep_steps(plan: list[tuple]) -> tuple[list[float], list[float]]:
    """The plan's shifts along the unit gap direction: of the image rows (``-s``) and the text rows."""
    return [-si for *_, si, _ in plan], [st for *_, st in plan]


def shift_sweep(I: np.ndarray, T: np.ndarray, pairs: np.ndarray | None, *, class_text: np.ndarray | None = None,
                labels: np.ndarray | None = None, fractions=SHIFT_FRACTIONS, deltas=None, max_rows: int = 5000,
                seed: int = 0, diff: np.ndarray | None = None, centroids: tuple | None = None,
                pairing: Pairing | None = None) -> dict:
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
    ``diff``: mean I - mean T, and ``centroids``: the shifted centroids (image, text) of every
    step of :func:`sweep_plan`, when the caller has them (e.g. from :mod:`gap_sums`); then
    ``I`` and ``T`` are only indexed for the sampled rows. ``pairing``: ``pairs`` as a
    :class:`Pairing`, when the caller has built it.
    """
    from clipscope.analysis.retrieval import (ONE_PASS_MAX_ENTRIES, cross_modal_recall, recall_from_similarities,
                                              zero_shot_accuracy)

    diff = column_sums(I) / len(I) - column_sums(T) / len(T) if diff is None else diff
    gap = float(np.linalg.norm(diff))
    g = gap_sums.unit_direction(diff)
    sub_pairs = None
    if pairs is not None and len(pairs):
        sub_pairs = pairs
        if len(pairs) > max_rows:
            sub_pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_rows, replace=False))]
        img_rows = np.unique(sub_pairs[:, 0])
        txt_rows = np.unique(sub_pairs[:, 1])
        # Every pair among the sampled rows counts as a match, not only the sampled ones: an
        # image's other caption that was drawn through another pair is a match, not a miss.
        pairing = pairing or Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))
        local = pairing.subset(img_rows, txt_rows)
        local_pairs = np.stack([local.a, local.b], 1)
    zs_rows = None
    if labels is not None and class_text is not None:
        zs_rows = np.arange(len(I))
        if len(I) > max_rows:
            zs_rows = np.sort(np.random.default_rng(seed + 1).choice(len(I), max_rows, replace=False))
    plan = sweep_plan(gap, fractions, deltas)
    if centroids is None:  # the centroid of every shifted, renormalised modality in one pass over its rows
        steps_i, steps_t = sweep_steps(plan)
        centroids = shifted_means(I, g, steps_i), shifted_means(T, g, steps_t)
    mean_i, mean_t = centroids
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
