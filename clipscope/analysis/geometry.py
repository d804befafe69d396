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
from clipscope.analysis.pairwise import (
    DEFAULT_MAX_PAIRS,
    DEFAULT_SAMPLE_PAIRS,
    Z95,
    PairMean,
    gaussian_cross_mean,
    gaussian_pair_mean,
)
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
    return cone_with_ci(X)[0]


def cone_with_ci(X: np.ndarray, units: np.ndarray | None = None) -> tuple[float, list[float] | None]:
    """The cone of rows X over pairs of rows from different sampling units (``units``: each
    row's unit, FIXED rows pairing with all; default every row its own), and its 95% interval
    from the U-statistic's influences per unit (``[v, v]`` when every row is fixed)."""
    from clipscope.analysis.units import interval, mean_influence, unit_counts, unit_groups

    units = np.arange(len(X), dtype=np.int64) if units is None else np.asarray(units, np.int64)
    n_units = int(units.max(initial=-1)) + 1
    r1 = gap_sums.modality_round1(X, units)
    c = gap_sums.Centroids(r1["sums"], r1["sums"], float(r1["n"]), float(r1["n"]), r1["fixed_sums"])
    r2 = gap_sums.modality_round2(X, c, units, n_units, text=False)
    within = gap_sums.within_units(X, unit_groups(units), units, n_units)
    theta, psi = gap_sums.cone_value_and_influence(r1["sums"], unit_counts(units, n_units), r2["sq_u"] + within,
                                                   r2["dot_own"], float(r1["fixed_n"]), float(r1["fixed_sq"]))
    return theta, ([theta, theta] if psi is None else interval(theta, mean_influence(psi)))


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
    ``X`` may be a tuple of arrays (their union, e.g. image and text rows). ``units`` (keyword):
    each row's sampling unit; pairs within one unit (two captions of one image) are left out.
    """
    return gaussian_pair_mean(X, t=t, **kw)


def cross_uniformity(T: np.ndarray, I: np.ndarray, pairs: np.ndarray, *, t: float = 2.0, units=None,
                     **kw) -> PairMean:
    """Cross-modal uniformity (Fahim et al. 2024): ``log mean exp(-t ||T_a - I_b||^2)`` over
    every text row a and image row b that are not paired in ``pairs`` (image row, text row).

    Negatives are defined by identity, not by row index: on COCO-style data an image's other
    captions, and in a class-prompt layout every image of the prompt's class, are paired, not
    negatives. On 1:1 data this is the mean over a != b. ``units``: the
    :class:`clipscope.analysis.units.Units` of the rows (default: from ``pairs``).
    """
    from clipscope.analysis.units import Units

    units = units or Units.from_pairs(pairs, len(I), len(T))
    return gaussian_cross_mean(T, I, Pairing.texts_by_images(pairs, len(I), len(T)), t=t, a_units=units.text_unit,
                               b_units=units.image_unit, **kw)


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


def best_negative_cosines_by_blocks(Tq: np.ndarray, I, pairing: Pairing, *, rows: int = 65536,
                                    block: int = DEFAULT_BLOCK, device: str = "cpu") -> np.ndarray:
    """:func:`best_negative_cosines` over image rows read ``rows`` at a time (``I``: an array or
    a :class:`clipscope.cache.RowReader`), combined by maximum as shards are."""
    from clipscope.linalg import row_blocks

    best = np.full(len(Tq), -np.inf, np.float32)
    for r0, part in row_blocks(I, rows, reverse=True):  # a later pass: last block first (see row_blocks)
        np.maximum(best, best_negative_cosines(Tq, part, pairing, offset=r0, block=block, device=device), out=best)
    return best


def separability_rows(n_images: int, n_texts: int, *, seed: int = 0, max_rows: int = 20000
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The image and text rows :func:`linear_separability` fits on: all, or a seeded sample of ``max_rows``."""
    rng = np.random.default_rng(seed)
    take = lambda n: np.sort(rng.choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)  # noqa: E731
    return take(n_images), take(n_texts)


def linear_separability(I: np.ndarray, T: np.ndarray, *, seed: int = 0, max_rows: int = 20000) -> tuple[float, int]:
    """Test accuracy of a logistic regression telling image rows from text rows (Fahim et al. 2024).

    Stratified 80/20 split (seeded). Each modality is subsampled to ``max_rows`` rows to bound
    the fit's cost. Returns ``(accuracy, n_test)``; 0.5 means inseparable, 1.0 fully separable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    # Indexed even when all rows are kept, so that I and T may be row readers (clipscope.cache.RowReader).
    rows_i, rows_t = separability_rows(len(I), len(T), seed=seed, max_rows=max_rows)
    Xi, Xt = I[rows_i], T[rows_t]
    X = np.concatenate([Xi, Xt]).astype(np.float64)
    y = np.concatenate([np.zeros(len(Xi), int), np.ones(len(Xt), int)])
    if min(len(Xi), len(Xt)) < 5:
        return float("nan"), 0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    clf = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
    return float(clf.score(Xte, yte)), len(yte)


# --------------------------------------------------------------------------- intervals


def centroid_gap_estimate(I: np.ndarray, T: np.ndarray, pairs: np.ndarray | None) -> tuple[float, list[float] | None]:
    """Bias-corrected modality gap ``||mu_I - mu_T||`` and its 95% interval.

    The plug-in ``||mean I - mean T||`` is biased upward by about ``tr Cov(I - T) / n``. Here
    ``||mu_I - mu_T||^2`` is estimated without bias by a U-statistic over sampling units
    (:mod:`clipscope.analysis.units`: an image with its captions; class prompts fixed), whose
    variance has the Hoeffding form (with its second-order term near a zero gap); the interval
    for the square is mapped through sqrt (clipped at 0). With ``pairs`` None the two sets are
    independent samples. Returns ``(estimate, interval)``; the interval contains the estimate.
    """
    from clipscope.analysis.units import Units

    units = Units.from_pairs(pairs, len(I), len(T))
    sums = gap_sums.local(I, T, pairs, units)
    vals = gap_sums.finalize(sums, lambda: gap_sums.z_second_moment(I, T, units, sums.centroids))
    return vals["centroid_distance"]["value"], vals["centroid_distance"]["ci95"]


# --------------------------------------------------------------------------- metric sets

GAP_METRICS = ("centroid_distance", "centroid_cosine", "paired_distance", "paired_cosine", "paired_angle", "rmg",
               "cone_image", "cone_text", "linear_separability")


def _m(value, ci=None, **extra) -> dict:
    return metric(value, ci95=ci, **extra)


def identity_pairs(n: int) -> np.ndarray:
    """Row i with row i, for n rows of each modality (1:1 data in aligned order)."""
    return np.stack([np.arange(n)] * 2, 1)


def gap_metrics(I, T, pairs: np.ndarray | None = None, *, seed: int = 0, units=None, sums=None,
                second_moment=None) -> dict[str, dict]:
    """The `gap` report's metrics.

    ``I``, ``T``: all image and all text rows (arrays, or row readers); ``pairs``: (image row,
    text row), which also defines the sampling units (:class:`clipscope.analysis.units.Units`,
    when ``units`` is not given); ``sums``: the :class:`gap_sums.GapSums` of these rows when
    the caller has them (computed shard by shard, say); otherwise they are computed here;
    ``second_moment()``: see :func:`gap_sums.finalize` (default: from ``I`` and ``T``).

    Intervals (95%), about the value they accompany, each from first-order influences per
    sampling unit (tests/test_coverage.py simulates their coverage on three layouts):
    centroid distance: its bias-corrected U-statistic; cones: U-statistics over pairs of units
    (fixed class prompts: no sampling error); paired metrics: ratio means over units; centroid
    cosine and RMG: delta method; separability: Wilson over its test rows.
    """
    from clipscope.analysis.units import Units

    units = units or Units.from_pairs(pairs, len(I), len(T))
    if sums is None:
        sums = gap_sums.local(I, T, pairs, units)
    if second_moment is None:
        second_moment = lambda: gap_sums.z_second_moment(I, T, units, sums.centroids)  # noqa: E731
    values = gap_sums.finalize(sums, second_moment)  # (consumes the per-unit sums: O(n) arrays)
    out = {k: _m(v.pop("value"), v.pop("ci95"), **v) for k, v in values.items() if k in GAP_METRICS}
    if units.texts_fixed:
        out["linear_separability"] = _m(None, None)
        out["linear_separability"]["why_undefined"] = (
            f"linear_separability is left out: the {len(T)} texts are fixed class prompts, not a sample, and a "
            "classifier telling a few fixed prompts from the images says nothing about the gap")
        return {k: out[k] for k in GAP_METRICS if k in out}
    acc, n_test = linear_separability(I, T, seed=seed)
    out["linear_separability"] = _m(acc, wilson_interval(acc, n_test), n_test=n_test)
    if n_test == 0:
        out["linear_separability"]["why_undefined"] = (f"linear_separability needs at least 5 rows of each modality "
                                                       f"for its 80/20 split; there are {len(I)} image and {len(T)} "
                                                       "text rows")
    return {k: out[k] for k in GAP_METRICS if k in out}


ALIGNMENT_SUMS = ("count", "d2")  # the per-unit pair sums alignment needs (gap_sums.pair_sums)


def uniformity_metrics(I, T, pairs: np.ndarray | None = None, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS,
                       sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                       device: str = "cpu", units=None, pair_stats: dict | None = None,
                       best_negatives=None) -> dict[str, dict]:
    """The `uniformity` report's metrics, exact in blocks up to ``max_pairs`` pairs, else sampled.

    ``I``, ``T``: every distinct image and text row; ``pairs``: (image row, text row), which
    defines the cross-modal negatives and the sampling units. Pair means count pairs of rows
    from different units (:mod:`clipscope.analysis.units`); intervals: their influences per unit
    (exact mode) or the spread of disjoint random subsets of units (sampled mode); alignment and
    relative alignment: ratio means over units. The rows may be :class:`clipscope.cache.RowReader`
    objects: sampled estimates then read only their sample. ``pair_stats`` (the pairs'
    :func:`gap_sums.pair_sums`) and ``best_negatives`` (see :func:`relative_alignment_rows`) let
    the O(n d) parts run elsewhere, e.g. shard by shard on Ray.
    """
    from clipscope.analysis.units import Units, interval, mean_influence

    units = units or Units.from_pairs(pairs, len(I), len(T))
    kw = dict(t=t, max_pairs=max_pairs, sample_pairs=sample_pairs, seed=seed, block=block, device=device)
    out = {}

    def add_pair_mean(name, pm: PairMean):
        value, ci = pm.log_with_ci()
        out[name] = _m(value, ci, exact=pm.exact, pairs_used=pm.n_pairs)

    add_pair_mean("uniformity_image", uniformity(I, units=units.image_unit, **kw))
    add_pair_mean("uniformity_text", uniformity(T, units=units.text_unit, **kw))
    add_pair_mean("uniformity_union", uniformity((I, T), units=np.concatenate([units.image_unit, units.text_unit]),
                                                 **kw))
    if pairs is not None and len(pairs):
        add_pair_mean("uniformity_cross", cross_uniformity(T, I, pairs, units=units, **kw))
        pu, attached = gap_sums.pair_layout(pairs, units)
        p = pair_stats if pair_stats is not None else gap_sums.pair_sums(
            gap_sums.Gather(I, pairs[:, 0]), gap_sums.Gather(T, pairs[:, 1]), pu, attached, units.n_units,
            keys=ALIGNMENT_SUMS)
        theta = float(p["d2"].sum() / p["count"].sum())
        psi = units.n_units * (p["d2"] - theta * p["count"]) / p["count"].sum()
        out["alignment"] = _m(theta, interval(theta, mean_influence(psi)))
        n = len(pairs)
        exact = n * len(I) <= max_pairs
        rows = None if exact else np.sort(np.random.default_rng(seed).choice(n, max(2, min(n, sample_pairs // len(I))),
                                                                              replace=False))
        ra = relative_alignment_rows(I, T, pairs, rows, block=block, device=device, best_negatives=best_negatives)
        used_units = pu if rows is None else pu[rows]
        undefined = int(np.isnan(ra).sum())
        ok = np.isfinite(ra)
        value = float(ra[ok].mean()) if ok.any() else float("nan")
        num = np.bincount(used_units[ok], weights=ra[ok], minlength=units.n_units)
        den = np.bincount(used_units[ok], minlength=units.n_units).astype(np.float64)
        psi = units.n_units * (num - value * den) / max(den.sum(), 1.0)
        extra = {}
        if units.fixed_texts.any():  # every image of a class shares its prompt's best negative: one sample maximum
            ci = None
            extra["no_interval"] = ("texts shared by several images (class prompts) share one nearest negative each, "
                                    "an extreme of the image sample whose spread the pairs do not show; no valid "
                                    "interval, so the gate does not test this metric")
        else:
            ci = interval(value, mean_influence(psi)) if ok.sum() > 2 else None
        out["relative_alignment"] = _m(value, ci, exact=exact, pairs_used=int(ok.sum() * len(I)),
                                       undefined_pairs=undefined, **extra)
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
    return gap_sums.shifted_centroids(len(X), sums, g, steps)


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


def sweep_pairs(pairs: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """The pairs :func:`shift_sweep` retrieves over: all, or a seeded sample of ``max_rows``."""
    if len(pairs) <= max_rows:
        return pairs
    return pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_rows, replace=False))]


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
    from clipscope.analysis.retrieval import (
        ONE_PASS_MAX_ENTRIES,
        cross_modal_recall,
        recall_from_similarities,
        zero_shot_accuracy,
    )

    diff = column_sums(I) / len(I) - column_sums(T) / len(T) if diff is None else diff
    gap = float(np.linalg.norm(diff))
    g = gap_sums.unit_direction(diff)
    sub_pairs = None
    if pairs is not None and len(pairs):
        sub_pairs = sweep_pairs(pairs, max_rows, seed)
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
