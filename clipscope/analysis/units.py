"""Sampling units: what is independent in a cache, so that every interval respects it.

A cache's rows are not independent draws. The captions of one image (COCO) are drawn together
with it; the prompts of a class-prompt layout (ImageNet, CIFAR: a fixed set of class texts)
are not drawn at all. :class:`Units` reads the layout from ``/pairs``:

- every image row is a unit;
- a text paired with exactly one image belongs to that image's unit (1:1 pairs, captions);
- a text paired with several images is *fixed*: a class prompt, part of the population's
  definition, not a sample (its statistics are constants with no sampling error);
- a text paired with no image is a unit of its own.

Population: new images drawn like these (each with its captions), with the fixed texts as they
are. Pair statistics over one modality count only pairs of rows from *different* units (two
captions of one image are not an independent pair), and every interval comes from first-order
(Hoeffding / delta-method) influences computed per unit: ``theta_hat - theta ~ mean_u psi_u``,
so ``se = sd(psi) / sqrt(U)``. tests/test_coverage.py simulates their coverage on 1:1,
several-captions-per-image and class-prompt layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FIXED = -1
Z95 = 1.959963984540054


@dataclass
class Units:
    n_images: int
    n_texts: int
    image_unit: np.ndarray  # (n_images,) unit of each image row: its own index
    text_unit: np.ndarray  # (n_texts,) unit of each text row, or FIXED
    n_units: int
    layout: str  # "1:1 pairs", "several captions per image", "class prompts", "mixed", "unpaired"

    @classmethod
    def from_pairs(cls, pairs: np.ndarray | None, n_images: int, n_texts: int) -> Units:
        from clipscope.pairing import sorted_unique

        pairs = np.zeros((0, 2), np.int64) if pairs is None else np.asarray(pairs, np.int64).reshape(-1, 2)
        pairs = pairs if sorted_unique(pairs) else np.unique(pairs, axis=0)
        text_degree = np.bincount(pairs[:, 1], minlength=n_texts) if n_texts else np.zeros(0, np.int64)
        text_unit = np.full(n_texts, FIXED, np.int64)
        single = text_degree[pairs[:, 1]] == 1
        text_unit[pairs[single, 1]] = pairs[single, 0]
        alone = np.flatnonzero(text_degree == 0)
        text_unit[alone] = n_images + np.arange(len(alone))
        fixed = int((text_degree > 1).sum())
        per_image = np.bincount(pairs[single, 0], minlength=n_images) if n_images else np.zeros(0, np.int64)
        if not len(pairs):
            layout = "unpaired"
        elif fixed and fixed < n_texts - len(alone):
            layout = "mixed"
        elif fixed:
            layout = "class prompts"
        elif per_image.max(initial=0) > 1:
            layout = "several captions per image"
        else:
            layout = "1:1 pairs"
        return cls(n_images, n_texts, np.arange(n_images, dtype=np.int64), text_unit, n_images + len(alone), layout)

    @property
    def fixed_texts(self) -> np.ndarray:
        return self.text_unit == FIXED

    @property
    def texts_fixed(self) -> bool:
        """Every text is fixed (a class-prompt layout): text-only statistics are constants."""
        return self.n_texts > 0 and bool(self.fixed_texts.all())

    def population(self) -> str:
        """The population the intervals refer to, in words."""
        base = "the population of images these rows were drawn from"
        if self.layout == "several captions per image":
            return f"{base}, each with its captions (an image and its captions are one sampling unit)"
        if self.layout in ("class prompts", "mixed"):
            return (f"{base}, with the {int(self.fixed_texts.sum())} texts shared by several images (class prompts) "
                    "held fixed: they are not a sample, so text-only statistics over them have no sampling error; if "
                    "the classes themselves are a sample of a larger set, these intervals are too narrow")
        return f"{base} (each image with its text is one sampling unit)"


def unit_counts(units: np.ndarray, n_units: int) -> np.ndarray:
    """Rows per unit (float64; rows of FIXED are left out)."""
    return np.bincount(units[units >= 0], minlength=n_units).astype(np.float64)


def per_unit(values: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Sum of per-row ``values`` by unit (rows of FIXED are left out); 2-d values sum by column."""
    keep = units >= 0
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        return np.bincount(units[keep], weights=values[keep], minlength=n_units)
    out = np.zeros((n_units, values.shape[1]))
    np.add.at(out, units[keep], values[keep])
    return out


def add_per_unit(acc: np.ndarray, values: np.ndarray, units: np.ndarray) -> None:
    """``acc += per_unit(values, units, len(acc))``, touching only the units present: a block of
    rows adds into its own window of units, so streaming n rows in blocks costs O(n), not
    O(n x blocks) (rows of FIXED are left out)."""
    keep = units >= 0
    if not keep.any():
        return
    u = units[keep]
    lo, hi = int(u.min()), int(u.max()) + 1
    values = np.asarray(values, np.float64)[keep]
    if values.ndim == 1:
        acc[lo:hi] += np.bincount(u - lo, weights=values, minlength=hi - lo)
    else:
        for j in range(values.shape[1]):  # a bincount per column: far faster than np.add.at
            acc[lo:hi, j] += np.bincount(u - lo, weights=values[:, j], minlength=hi - lo)


def unit_groups(units: np.ndarray, *, min_size: int = 2) -> list[np.ndarray]:
    """Row indices of every unit with at least ``min_size`` rows, as one (n_units_of_size, size)
    array per size: units of equal size stack, so their within-unit products batch."""
    valid = units >= 0
    if not valid.any():
        return []
    # only rows of units that large are sorted (1:1 data, millions of units of one row: none)
    grouped = np.bincount(units[valid]) >= min_size
    keep = np.flatnonzero(valid & grouped[np.maximum(units, 0)])
    if not len(keep):
        return []
    order = keep[np.argsort(units[keep], kind="stable")]
    u = units[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    out = []
    for size in np.unique(sizes[sizes >= min_size]):
        first = starts[sizes == size]
        out.append(order[first[:, None] + np.arange(size)[None, :]])
    return out


def within_unit_sums(X, groups: list[np.ndarray], kernel, n_rows: int, *, chunk_rows: int = 65536) -> np.ndarray:
    """For each row r, the sum of ``kernel(<x_r, x_s>)`` over the other rows s of its unit
    (0 for rows alone in their unit or FIXED). ``X`` is indexable by an index array (an array
    or a :class:`clipscope.cache.RowReader`); ``groups``: :func:`unit_groups`."""
    out = np.zeros(n_rows)
    for g in groups:
        size = g.shape[1]
        step = max(1, chunk_rows // size)
        for k in range(0, len(g), step):
            idx = g[k:k + step]
            flat = idx.ravel()
            order = np.argsort(flat, kind="stable")
            rows = np.empty((len(flat), X.shape[1]), np.float32)
            rows[order] = X[flat[order]]  # readers read increasing indices
            R = rows.reshape(len(idx), size, -1).astype(np.float64)
            K = kernel(np.einsum("gid,gjd->gij", R, R))
            K[:, np.arange(size), np.arange(size)] = 0.0
            out[flat] = K.sum(2).ravel()
    return out


def mean_influence(psi: np.ndarray) -> float | None:
    """Standard error of a statistic whose first-order expansion is ``mean(psi)`` over units."""
    psi = np.asarray(psi, np.float64)
    if len(psi) < 3:
        return None
    return float(math.sqrt(psi.var(ddof=1) / len(psi)))


def interval(value: float, se: float | None) -> list[float] | None:
    if se is None or not math.isfinite(se) or not math.isfinite(value):
        return None
    return [value - Z95 * se, value + Z95 * se]


def pair_mean_influence(H: np.ndarray, M: np.ndarray, total: float, count: float, *, symmetric: bool
                        ) -> tuple[float, np.ndarray]:
    """A mean of a kernel over pairs of rows from different units (and pairs with fixed rows),
    ``theta = total / count``, from each unit's ``H_u`` (the kernel summed over the valid pairs
    its rows are part of; for one set, over ordered pairs whose first row is the unit's) and
    ``M_u`` (their number). First-order expansion of the U-statistic over units:
    ``psi_u = f U (H_u - theta M_u) / count`` with f = 2 for one set of rows (each pair is an
    ordered pair twice), 1 for two sets (images x texts)."""
    theta = float(total / count)
    U = len(H)
    return theta, (2.0 if symmetric else 1.0) * U * (H - theta * M) / count
