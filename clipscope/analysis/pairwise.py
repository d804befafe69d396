"""Means of a kernel over all pairs of rows, exact in blocks or estimated from a sample.

These are the U-statistics behind uniformity (Wang & Isola 2020) and its cross-modal variant.
Exact mode walks the upper triangle of the similarity matrix tile by tile; its interval comes
from Hoeffding's variance of a U-statistic, Var(U) ~ 4 Var(h1) / n, with h1(i) the mean kernel
of row i against all others (computed in the same pass). Above ``max_pairs`` pairs, the mean
is estimated from K disjoint random subsets of rows: each subset's all-pairs mean is an
unbiased estimate of the full mean, and their spread gives the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipscope.errors import ClipscopeError
from clipscope.linalg import DEFAULT_BLOCK, similarity_tiles

DEFAULT_MAX_PAIRS = 5_000_000_000  # exact up to 100,000 rows per set
DEFAULT_SAMPLE_PAIRS = 200_000_000
N_SUBSETS = 10
Z95 = 1.959963984540054


@dataclass
class PairMean:
    """The mean of a kernel over pairs, with its standard error and how it was obtained."""

    mean: float
    se: float
    exact: bool
    n_pairs: int

    def log_with_ci(self) -> tuple[float, tuple[float, float] | None]:
        """log(mean) with a delta-method 95% interval."""
        if not self.mean > 0:
            raise ClipscopeError("every kernel value exp(-t ||x - y||^2) underflowed to 0, so its log is undefined: "
                                 "t is too large for these rows; use a smaller --t (Wang & Isola use t = 2)")
        value = math.log(self.mean)
        if self.se == 0:  # over fixed rows only (class prompts): a constant, no sampling error
            return value, (value, value)
        if not np.isfinite(self.se) or self.se < 0:
            return value, None
        half = Z95 * self.se / self.mean
        return value, (value - half, value + half)


def _gaussian_kernel_sums(a, b, t: float, *, block: int, device: str, same: bool, pairing=None):
    """Row sums (and, for two sets, column sums) of exp(-t ||a_i - b_j||^2).

    One set (``same``): over j != i. Two sets: over the (i, j) that ``pairing`` (a
    :class:`clipscope.pairing.Pairing` of a's rows by b's rows) does not pair.
    Rows must be L2-normalised: ||a_i - b_j||^2 = 2 - 2 <a_i, b_j>.
    """
    import torch

    n, m = len(a), len(a if b is None else b)
    rows = torch.zeros(n, dtype=torch.float64, device=device)
    cols = rows if same else torch.zeros(m, dtype=torch.float64, device=device)
    # A tile's sums are taken in float32 (torch sums in cascades: ~1e-7 relative over a few
    # thousand terms) and accumulated across tiles in float64; summing with dtype=float64 is
    # ~20x slower on CPU and was most of uniformity's time.
    for i0, i1, j0, j1, s in similarity_tiles(a, None if same else b, block=block, device=device, upper=same):
        k = s.mul_(2 * t).sub_(2 * t).exp_()
        if same and i0 == j0:
            # A diagonal tile is symmetric: its full row sums less the diagonal are each row's
            # sum over j != i within the tile, both directions at once.
            rows[i0:i1] += (k.sum(1) - k.diagonal()).double()
            continue
        if not same:
            r, c = pairing.in_tile(i0, i1, j0, j1)
            if len(r):
                k[torch.from_numpy(r).to(k.device), torch.from_numpy(c).to(k.device)] = 0.0  # paired: not a negative
        rows[i0:i1] += k.sum(1).double()
        cols[j0:j1] += k.sum(0).double()
    return rows.cpu().numpy(), (None if same else cols.cpu().numpy())


def _rows(a, idx: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``a``, or of the virtual concatenation of a tuple of arrays (no full copy)."""
    if not isinstance(a, tuple):
        if idx is None:  # all rows: a row reader (clipscope.cache.RowReader) reads them now
            return a if isinstance(a, np.ndarray) else a[np.arange(len(a))]
        return a[idx]
    if idx is None:
        return np.concatenate([_rows(x) for x in a])
    offsets = np.cumsum([0] + [len(x) for x in a])
    out = np.empty((len(idx), a[0].shape[1]), a[0].dtype)
    for k, x in enumerate(a):
        sel = (idx >= offsets[k]) & (idx < offsets[k + 1])
        out[sel] = x[idx[sel] - offsets[k]]
    return out


def _sampled_subsets(units: np.ndarray, n_units: int, sample_pairs: int, seed: int) -> list[np.ndarray]:
    """The rows of the K disjoint random subsets of units the sampled mode of
    :func:`gaussian_pair_mean` averages over (``units`` compacted, FIXED rows never sampled)."""
    order = np.random.default_rng(seed).permutation(n_units)
    rows_per_unit = int((units >= 0).sum()) / max(1, n_units)
    m = max(2, min(int(math.sqrt(2 * sample_pairs / N_SUBSETS) / rows_per_unit), n_units // N_SUBSETS))
    # subset k holds the units of rank k*m..(k+1)*m-1 in the permutation; each row is tagged with
    # its unit's subset (-1: none, or a FIXED row, whose id -1 reads the tag past the end)
    chosen = order[:N_SUBSETS * m]
    tag = np.full(n_units + 1, -1, np.int16)  # (N_SUBSETS subsets: small numbers, 2 bytes a row)
    tag[chosen] = np.arange(len(chosen)) // m
    row_tags = tag[units]
    tagged = np.flatnonzero(row_tags >= 0)
    return [tagged[row_tags[tagged] == k] for k in range(N_SUBSETS)]


def pair_mean_sample_rows(units, n: int, *, max_pairs: int = DEFAULT_MAX_PAIRS,
                          sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0) -> np.ndarray:
    """Every row :func:`gaussian_pair_mean` reads in sampled mode over ``n`` rows with these
    ``units`` (none when it would be exact), so a pass over the rows can keep them as it goes."""
    units, n_units = _compact(_unit_ids(units, n))
    sizes = np.bincount(units[units >= 0], minlength=n_units)
    if (n * (n - 1) - int((sizes * (sizes - 1)).sum())) // 2 <= max_pairs:
        return np.zeros(0, np.int64)
    return np.concatenate(_sampled_subsets(units, n_units, sample_pairs, seed))


def _unit_ids(units, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if units is None else np.asarray(units, np.int64)


def _compact(units: np.ndarray) -> tuple[np.ndarray, int]:
    """Units renumbered 0..U-1 (FIXED stays FIXED)."""
    from clipscope.analysis.units import FIXED

    keep = units >= 0
    top = int(units.max(initial=-1)) + 1
    if top > 4 * len(units) + 1024:  # sparse ids: sorted (np.unique, several copies of the units)
        out = np.full(len(units), FIXED, np.int64)
        uniq, inv = np.unique(units[keep], return_inverse=True)
        out[keep] = inv.ravel()
        return out, len(uniq)
    # ids within about the rows' count (as Units numbers them): each id's rank among those
    # present, by counting; no sort, and no copy when they are already 0..U-1
    present = np.bincount(units if keep.all() else units[keep], minlength=top) > 0
    if present.all():
        return units, top
    rank = np.cumsum(present) - 1
    out = rank[np.maximum(units, 0)]
    out[~keep] = FIXED
    return out, int(rank[-1]) + 1


def _kernel(t: float):
    return lambda dots: np.exp(-t * np.maximum(0.0, 2.0 - 2.0 * dots))


def gaussian_pair_mean(a, *, t: float = 2.0, units=None, max_pairs: int = DEFAULT_MAX_PAIRS,
                       sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                       device: str = "cpu") -> PairMean:
    """Mean of exp(-t ||x_i - x_j||^2) over the pairs of rows from different sampling units.

    ``units``: each row's unit (:mod:`clipscope.analysis.units`; FIXED rows pair with every
    other row and are not sampled); default: every row its own unit, i.e. all pairs i < j.
    ``a`` may be a tuple of arrays, read as their concatenation (copied only in exact mode).
    Exact mode: blocked row sums less the within-unit ones; interval from the U-statistic's
    first-order influences per unit (Hoeffding). Above ``max_pairs`` pairs: the random-random
    part from K disjoint subsets of units (their spread gives the interval), the parts with
    fixed rows exactly, weighted by their pair counts.
    """
    from clipscope.analysis.units import FIXED, mean_influence, pair_mean_influence, unit_groups, within_unit_sums

    n = sum(len(x) for x in a) if isinstance(a, tuple) else len(a)
    units, n_units = _compact(_unit_ids(units, n))
    sizes = np.bincount(units[units >= 0], minlength=n_units)
    n_fixed = int((units == FIXED).sum())
    total_pairs = (n * (n - 1) - int((sizes * (sizes - 1)).sum())) // 2
    if total_pairs < 1:
        raise ClipscopeError("uniformity needs at least two rows from different sampling units")
    if total_pairs <= max_pairs:
        X = _rows(a)
        rows, _ = _gaussian_kernel_sums(X, None, t, block=block, device=device, same=True)
        within = within_unit_sums(X, unit_groups(units), _kernel(t), n)
        valid = rows - within
        count = 2.0 * total_pairs
        H = np.bincount(units[units >= 0], weights=valid[units >= 0], minlength=n_units)
        M = sizes * (n - sizes).astype(np.float64)
        theta, psi = pair_mean_influence(H, M, float(valid.sum()), count, symmetric=True)
        se = 0.0 if n_units == 0 else (mean_influence(psi) if n_units > 2 else float("nan"))
        return PairMean(theta, float("nan") if se is None else se, True, total_pairs)
    estimates, used = [], 0
    for idx in _sampled_subsets(units, n_units, sample_pairs, seed):
        sub_units = units[idx]
        X = _rows(a, idx)
        rows, _ = _gaussian_kernel_sums(X, None, t, block=block, device=device, same=True)
        within = within_unit_sums(X, unit_groups(sub_units), _kernel(t), len(idx))
        s = np.bincount(sub_units, minlength=n_units)
        pairs_k = len(idx) * (len(idx) - 1) - int((s * (s - 1)).sum())
        if pairs_k > 0:
            estimates.append(float((rows - within).sum() / pairs_k))
            used += pairs_k // 2
    est = np.asarray(estimates)
    if len(est) < 2:
        raise ClipscopeError("too few sampling units to sample pairs from: raise --max-pairs for the exact mean")
    mean_rr, se_rr = float(est.mean()), float(est.std(ddof=1) / math.sqrt(len(est)))
    if not n_fixed:
        return PairMean(mean_rr, se_rr, False, used)
    # pairs with fixed rows: exact (there are few fixed rows), weighted by their share of all pairs
    fixed_rows = np.flatnonzero(units == FIXED)
    random_rows = np.flatnonzero(units >= 0)
    n_r = len(random_rows)
    c_rr = n_r * (n_r - 1) / 2 - float((sizes * (sizes - 1)).sum()) / 2
    c_rf, c_ff = n_r * n_fixed, n_fixed * (n_fixed - 1) / 2
    F = _rows(a, fixed_rows)
    rf = _sums_over(F, a, random_rows, t, block=block, device=device)  # per random row: over the fixed rows
    ff = _gaussian_kernel_sums(F, None, t, block=block, device=device, same=True)[0].sum() / 2 if n_fixed > 1 else 0.0
    mean = (c_rr * mean_rr + rf.sum() + ff) / (c_rr + c_rf + c_ff)
    se_rf = float(rf.std(ddof=1) / math.sqrt(n_r)) / max(1, n_fixed) if n_r > 2 else 0.0  # mean over fixed, per row
    se = math.sqrt((c_rr * se_rr) ** 2 + (c_rf * se_rf) ** 2) / (c_rr + c_rf + c_ff)
    return PairMean(float(mean), se, False, used + c_rf + int(c_ff))


def _sums_over(F: np.ndarray, b, idx: np.ndarray, t: float, *, block: int, device: str, pairing_of=None,
               chunk: int = 65536) -> np.ndarray:
    """For each row ``b[idx]``: the kernel summed over the rows of F (the fixed rows), less its
    pairs (``pairing_of(chunk of idx)``: F's rows by those rows); b's rows are read ``chunk`` at a
    time (a multiple of ``block``: the same tiles, so the same sums, as in one piece)."""
    chunk = max(block, chunk // block * block)
    out = np.empty(len(idx))
    for s in range(0, len(idx), chunk):
        part = idx[s:s + chunk]
        pairing = _NoPairs() if pairing_of is None else pairing_of(part)
        _, out[s:s + len(part)] = _gaussian_kernel_sums(F, _rows(b, part), t, block=block, device=device, same=False,
                                                        pairing=pairing)
    return out


class _NoPairs:
    """A pairing with no pairs (every combination counts)."""

    def in_tile(self, a0, a1, b0, b1):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)


def gaussian_cross_mean(a: np.ndarray, b: np.ndarray, pairing, *, t: float = 2.0, a_units=None, b_units=None,
                        max_pairs: int = DEFAULT_MAX_PAIRS, sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0,
                        block: int = DEFAULT_BLOCK, device: str = "cpu") -> PairMean:
    """Mean of exp(-t ||a_i - b_j||^2) over every (i, j) that ``pairing`` does not pair.

    ``a`` and ``b`` hold each distinct row once (e.g. all text rows and all image rows), and
    ``pairing`` (:class:`clipscope.pairing.Pairing`, a's rows by b's rows) says which
    combinations are pairs. ``a_units``, ``b_units``: each row's sampling unit in one id space
    (a text's unit is its image's; FIXED texts are not sampled); default: row i of a and of b
    share unit i when the pairing is the identity, else every row its own. Exact mode's
    interval: first-order influences per unit of the two-sample U-statistic. Sampled mode:
    K disjoint subsets of units, each giving an unbiased estimate over its unpaired
    combinations; combinations with fixed rows are summed exactly.
    """
    from clipscope.analysis.units import FIXED, mean_influence, pair_mean_influence

    n, m = len(a), len(b)
    if a_units is None or b_units is None:
        a_units = np.arange(n, dtype=np.int64)
        b_units = np.arange(m, dtype=np.int64) + (0 if pairing.is_identity else n)
    both, n_units = _compact(np.concatenate([np.asarray(a_units, np.int64), np.asarray(b_units, np.int64)]))
    ua, ub = both[:n], both[n:]
    total = n * m - len(pairing)
    if total < 1:
        raise ClipscopeError("every combination of rows is paired: there are no negatives to average over")
    if total <= max_pairs:
        rows, cols = _gaussian_kernel_sums(_rows(a), _rows(b), t, block=block, device=device, same=False,
                                           pairing=pairing)
        ra, cb = m - pairing.degree_a(), n - pairing.degree_b()
        H = np.bincount(ua[ua >= 0], weights=rows[ua >= 0], minlength=n_units) + \
            np.bincount(ub[ub >= 0], weights=cols[ub >= 0], minlength=n_units)
        M = np.bincount(ua[ua >= 0], weights=ra[ua >= 0], minlength=n_units) + \
            np.bincount(ub[ub >= 0], weights=cb[ub >= 0], minlength=n_units)
        theta, psi = pair_mean_influence(H, M.astype(np.float64), float(rows.sum()), float(total), symmetric=False)
        se = mean_influence(psi) if n_units > 2 else None
        return PairMean(theta, float("nan") if se is None else se, True, total)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_units)
    rank = np.empty(n_units, np.int64)
    rank[order] = np.arange(n_units)
    per = max(2, n_units // N_SUBSETS)
    rows_per_unit = (n + m) / max(1, n_units)
    per = max(2, min(per, int(math.sqrt(sample_pairs / N_SUBSETS) / max(rows_per_unit / 2, 1))))
    fixed_a = np.flatnonzero(ua == FIXED)
    estimates, used = [], 0
    def in_subset(u, k):
        r = rank[np.maximum(u, 0)]
        return (u >= 0) & (r >= k * per) & (r < (k + 1) * per)

    for k in range(N_SUBSETS):
        ia, ib = np.flatnonzero(in_subset(ua, k)), np.flatnonzero(in_subset(ub, k))
        sub = pairing.subset(ia, ib)
        count = len(ia) * len(ib) - len(sub)
        if count < 1:
            continue
        r, _ = _gaussian_kernel_sums(_rows(a, ia), _rows(b, ib), t, block=block, device=device, same=False, pairing=sub)
        estimates.append(r.sum() / count)
        used += count
    est = np.asarray(estimates)
    if not len(est) and not len(fixed_a):
        raise ClipscopeError("too few sampling units to sample pairs from: raise --max-pairs for the exact mean")
    mean_rr, se_rr = (float(est.mean()), float(est.std(ddof=1) / math.sqrt(len(est)))) if len(est) > 1 else (0.0, 0.0)
    if not len(fixed_a):
        return PairMean(mean_rr, se_rr, False, used)
    # fixed rows of a (class prompts) against every image: exact, weighted by their share
    sub = pairing.subset(fixed_a, None)
    cols = _sums_over(_rows(a, fixed_a), b, np.arange(m), t, block=block, device=device,
                      pairing_of=lambda idx: pairing.subset(fixed_a, idx))
    c_rf = len(fixed_a) * m - len(sub)
    c_rr = total - c_rf
    mean = (c_rr * mean_rr + cols.sum()) / total
    per_image = cols / np.maximum(1, len(fixed_a) - sub.degree_b())
    se_rf = float(per_image.std(ddof=1) / math.sqrt(m)) if m > 2 else 0.0
    se = math.sqrt((c_rr * se_rr) ** 2 + (c_rf * se_rf) ** 2) / total
    return PairMean(float(mean), se, False, used + c_rf)
