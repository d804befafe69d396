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
        if not np.isfinite(self.se) or self.se <= 0:
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


def gaussian_pair_mean(a, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS,
                       sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                       device: str = "cpu") -> PairMean:
    """Mean of exp(-t ||x_i - x_j||^2) over the unordered pairs i < j of one set of rows.

    ``a`` may be a tuple of arrays, read as their concatenation (copied only in exact mode).
    """
    n = sum(len(x) for x in a) if isinstance(a, tuple) else len(a)
    total = n * (n - 1) // 2
    if total < 1:
        raise ClipscopeError("uniformity needs at least two rows")
    if total <= max_pairs:
        rows, _ = _gaussian_kernel_sums(_rows(a), None, t, block=block, device=device, same=True)
        # Each kernel value was added to both of its rows: the row sums count it twice.
        mean = rows.sum() / (2 * total)
        h1 = rows / (n - 1)  # each row's sum covers all j != i (row + column contributions)
        se = math.sqrt(4 * h1.var(ddof=1) / n) if n > 2 else float("nan")
        return PairMean(float(mean), se, True, total)
    rng = np.random.default_rng(seed)
    m = max(2, min(int(math.sqrt(2 * sample_pairs / N_SUBSETS)), n // N_SUBSETS))
    order = rng.permutation(n)
    estimates = []
    for k in range(N_SUBSETS):
        idx = np.sort(order[k * m:(k + 1) * m])
        rows, _ = _gaussian_kernel_sums(_rows(a, idx), None, t, block=block, device=device, same=True)
        estimates.append(rows.sum() / (m * (m - 1)))  # m(m-1)/2 pairs, each counted twice
    est = np.asarray(estimates)
    return PairMean(float(est.mean()), float(est.std(ddof=1) / math.sqrt(N_SUBSETS)), False,
                    N_SUBSETS * (m * (m - 1) // 2))


def gaussian_cross_mean(a: np.ndarray, b: np.ndarray, pairing, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS,
                        sample_pairs: int = DEFAULT_SAMPLE_PAIRS, seed: int = 0, block: int = DEFAULT_BLOCK,
                        device: str = "cpu") -> PairMean:
    """Mean of exp(-t ||a_i - b_j||^2) over every (i, j) that ``pairing`` does not pair.

    ``a`` and ``b`` hold each distinct row once (e.g. all text rows and all image rows), and
    ``pairing`` (:class:`clipscope.pairing.Pairing`, a's rows by b's rows) says which
    combinations are pairs. Exact mode's interval: the two-sample U-statistic variance
    Var(h_a)/n_a + Var(h_b)/n_b from the row and column means. Sampled mode: K disjoint
    subsets of rows and of columns (the same subsets for both when the pairing is the identity,
    as for 1:1 data), each giving an unbiased estimate over its unpaired combinations.
    """
    n, m = len(a), len(b)
    total = n * m - len(pairing)
    if total < 1:
        raise ClipscopeError("every combination of rows is paired: there are no negatives to average over")
    if total <= max_pairs:
        rows, cols = _gaussian_kernel_sums(_rows(a), _rows(b), t, block=block, device=device, same=False,
                                           pairing=pairing)
        ra, cb = m - pairing.degree_a(), n - pairing.degree_b()
        h_a = rows[ra > 0] / ra[ra > 0]
        h_b = cols[cb > 0] / cb[cb > 0]
        se = math.sqrt(h_a.var(ddof=1) / len(h_a) + h_b.var(ddof=1) / len(h_b)) if min(len(h_a), len(h_b)) > 2 \
            else float("nan")
        return PairMean(float(rows.sum() / total), se, True, total)
    rng = np.random.default_rng(seed)
    k_rows = max(2, min(int(math.sqrt(sample_pairs / N_SUBSETS)), n // N_SUBSETS, m // N_SUBSETS))
    shared = pairing.is_identity
    order_a = rng.permutation(n)
    order_b = order_a if shared else rng.permutation(m)
    estimates, used = [], 0
    for k in range(N_SUBSETS):
        ia = np.sort(order_a[k * k_rows:(k + 1) * k_rows])
        ib = ia if shared else np.sort(order_b[k * k_rows:(k + 1) * k_rows])
        sub = pairing.subset(ia, ib)
        count = len(ia) * len(ib) - len(sub)
        if count < 1:
            continue
        rows, _ = _gaussian_kernel_sums(a[ia], b[ib], t, block=block, device=device, same=False, pairing=sub)
        estimates.append(rows.sum() / count)
        used += count
    est = np.asarray(estimates)
    return PairMean(float(est.mean()), float(est.std(ddof=1) / math.sqrt(len(est))), False, used)
