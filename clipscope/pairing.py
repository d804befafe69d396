"""Pairs of (image row, text row): the one place that drops rows and keeps ``/pairs`` consistent.

A cache's rows are identities (an image, a caption); ``/pairs`` says which belong together. Many
layouts exist: 1:1 pairs, several captions per image (COCO), many images sharing one text (class
prompts). Code that needs "the paired rows" or "the rows not paired with this one" asks here.
"""

from __future__ import annotations

import numpy as np

from clipscope.errors import ClipscopeError


def drop_rows(pairs: np.ndarray, n: int, keep: np.ndarray, column: int) -> np.ndarray:
    """Remove rows of one modality and renumber the pairs that survive.

    ``keep``: boolean mask over the ``n`` rows of the modality in ``column`` (0 image, 1 text).
    Pairs that point to a dropped row are dropped; the others get the row's new index.
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    keep = np.asarray(keep, bool)
    if keep.all():
        return pairs
    remap = -np.ones(n, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    out = pairs.copy()
    out[:, column] = remap[pairs[:, column]]
    return out[out[:, column] >= 0]


def check_pairs(pairs: np.ndarray, n_images: int, n_texts: int, where: str) -> np.ndarray:
    """``pairs`` as int64 (M, 2), or a one-line error when an index is negative or out of range."""
    p = np.asarray(pairs)
    if p.size == 0:
        return np.zeros((0, 2), np.int64)
    if p.ndim != 2 or p.shape[1] != 2 or p.dtype.kind not in "iu":
        raise ClipscopeError(f"{where}: pairs must be an integer (M, 2) array of (image row, text row), "
                             f"got shape {tuple(p.shape)} {p.dtype}")
    p = p.astype(np.int64)
    for col, n, what in ((0, n_images, "image"), (1, n_texts, "text")):
        bad = (p[:, col] < 0) | (p[:, col] >= n)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ClipscopeError(f"{where}: pair {k} names {what} row {int(p[k, col])}, but rows are 0..{n - 1}; "
                                 "fix the pairs (0-based rows, no negative indices)")
    return p
