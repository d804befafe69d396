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


def _gaussian_kernel_sums(a, b, t: float, *, block: int, device: str, same: bool):
    """Row sums (and, for two sets, column sums) of exp(-t ||a_i - b_j||^2) over j != i.

    Rows must be L2-normalised: ||a_i - b_j||^2 = 2 - 2 <a_i, b_j>.
    """
    import torch

    n, m = len(a), len(a if b is None else b)
    rows = torch.zeros(n, dtype=torch.float64, device=device)
    cols = rows if same else torch.zeros(m, dtype=torch.float64, device=device)
    for i0, i1, j0, j1, s in similarity_tiles(a, None if same else b, block=block, device=device, upper=same):
        k = s.mul_(2 * t).sub_(2 * t).exp_()
        if same and i0 == j0:
            k = torch.triu(k, diagonal=1)  # strict upper triangle of a diagonal tile
        elif not same and i0 < j1 and j0 < i1:
            lo, hi = max(i0, j0), min(i1, j1)
            idx = torch.arange(lo, hi, device=k.device)
            k[idx - i0, idx - j0] = 0.0  # i != j: drop the paired diagonal
        rows[i0:i1] += k.sum(1, dtype=torch.float64)
        cols[j0:j1] += k.sum(0, dtype=torch.float64)
    return rows.cpu().numpy(), (None if same else cols.cpu().numpy())


def _rows(a, idx: np.ndarray | None = None) -> np.ndarray:
    """Rows of ``a``, or of the virtual concatenation of a tuple of arrays (no full copy)."""
    if not isinstance(a, tuple):
        return a if idx is None else a[idx]
    if idx is None:
        return np.concatenate(a)
    offsets = np.cumsum([0] + [len(x) for x in a])
    out = np.empty((len(idx), a[0].shape[1]), a[0].dtype)
    for k, x in enumerate(a):
        sel = (idx >= offsets[k]) & (idx < offsets[k + 1])
        out[sel] = x[idx[sel] - offsets[k]]
    return out


def gaussian_pair_mean(a, b: np.ndarray | None = None, *, t: float = 2.0,
                       max_pairs: int = DEFAULT_MAX_PAIRS, sample_pairs: int = DEFAULT_SAMPLE_PAIRS,
                       seed: int = 0, block: int = DEFAULT_BLOCK, device: str = "cpu") -> PairMean:
    """Mean of exp(-t ||x - y||^2) over pairs.

    ``b is None``: unordered pairs i < j of ``a``. Otherwise ordered pairs (a_i, b_j), i != j,
    with ``a`` and ``b`` row-aligned (row i of one pairs with row i of the other). ``a`` may be
    a tuple of arrays, read as their concatenation (copied only in exact mode).
    """
    same = b is None
    n = sum(len(x) for x in a) if isinstance(a, tuple) else len(a)
    total = n * (n - 1) // 2 if same else n * (n - 1)
    if total < 1:
        raise ValueError("need at least two rows")
    if total <= max_pairs:
        rows, cols = _gaussian_kernel_sums(_rows(a), b, t, block=block, device=device, same=same)
        # With one set, each kernel value was added to both of its rows: the row sums count it twice.
        mean = rows.sum() / (2 * total) if same else rows.sum() / total
        if same:
            h1 = rows / (n - 1)  # each row's sum covers all j != i (row + column contributions)
            se = math.sqrt(4 * h1.var(ddof=1) / n) if n > 2 else float("nan")
        else:
            se = math.sqrt((rows / (n - 1)).var(ddof=1) / n + (cols / (n - 1)).var(ddof=1) / n) if n > 2 else float("nan")
        return PairMean(float(mean), se, True, total)
    rng = np.random.default_rng(seed)
    per_subset = sample_pairs / N_SUBSETS
    m = int(math.sqrt(2 * per_subset)) if same else int(math.sqrt(per_subset))
    m = max(2, min(m, n // N_SUBSETS))
    order = rng.permutation(n)
    estimates = []
    for k in range(N_SUBSETS):
        idx = np.sort(order[k * m:(k + 1) * m])
        sub_b = None if same else b[idx]
        rows, _ = _gaussian_kernel_sums(_rows(a, idx), sub_b, t, block=block, device=device, same=same)
        # one set: m(m-1)/2 pairs, each counted twice in the row sums; two sets: m(m-1) pairs once
        estimates.append(rows.sum() / (m * (m - 1)))
    est = np.asarray(estimates)
    pairs_used = N_SUBSETS * (m * (m - 1) // 2 if same else m * (m - 1))
    return PairMean(float(est.mean()), float(est.std(ddof=1) / math.sqrt(N_SUBSETS)), False, pairs_used)
