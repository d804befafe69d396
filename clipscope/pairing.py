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


class Pairing:
    """Which entries of an (A rows x B rows) similarity matrix are paired, for masking tiles.

    Negatives are defined by identity: for a text row, every image row it is not paired with
    in ``/pairs``; for an image row, every text it is not paired with. On COCO-style data an
    image's other captions are therefore never negatives of it, and in a class-prompt layout
    no image of a class is a negative of its prompt. Duplicate pairs count once.
    """

    def __init__(self, a_rows, b_rows, n_a: int, n_b: int):
        p = np.stack([np.asarray(a_rows, np.int64), np.asarray(b_rows, np.int64)], 1).reshape(-1, 2)
        p = p if sorted_unique(p) else np.unique(p, axis=0)
        self.a, self.b = p[:, 0], p[:, 1]  # sorted by a, then b
        self.n_a, self.n_b = int(n_a), int(n_b)
        self.ptr = np.searchsorted(self.a, np.arange(self.n_a + 1))

    @classmethod
    def texts_by_images(cls, pairs: np.ndarray, n_images: int, n_texts: int) -> Pairing:
        """Rows A = texts, columns B = images, from cache pairs (image row, text row)."""
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        return cls(pairs[:, 1], pairs[:, 0], n_texts, n_images)

    def __len__(self) -> int:
        return len(self.a)

    @property
    def is_identity(self) -> bool:
        """Row i pairs with column i and nothing else (1:1 data in aligned order)."""
        return self.n_a == self.n_b == len(self.a) and np.array_equal(self.a, self.b) and np.array_equal(
            self.a, np.arange(self.n_a))

    def degree_a(self) -> np.ndarray:
        return np.diff(self.ptr)

    def degree_b(self) -> np.ndarray:
        return np.bincount(self.b, minlength=self.n_b)

    def in_tile(self, a0: int, a1: int, b0: int, b1: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile-local (row, column) indices of the paired entries in rows a0:a1, columns b0:b1."""
        lo, hi = self.ptr[a0], self.ptr[a1]
        a, b = self.a[lo:hi], self.b[lo:hi]
        keep = (b >= b0) & (b < b1)
        return a[keep] - a0, b[keep] - b0

    def subset(self, a_idx: np.ndarray | None = None, b_idx: np.ndarray | None = None) -> Pairing:
        """The pairing between rows ``a_idx`` and columns ``b_idx`` (sorted distinct index arrays;
        None: all), renumbered to positions within them. Memory: the selected rows' pairs (a
        sample's subset of millions of pairs allocates nothing of the full size)."""
        if a_idx is None:
            a, b = self.a, self.b
        else:
            a_idx = np.asarray(a_idx, np.int64)
            starts, lengths = self.ptr[a_idx], np.diff(self.ptr)[a_idx]
            a = np.repeat(np.arange(len(a_idx)), lengths)
            # the entries ptr[r]..ptr[r+1]-1 of every chosen row r, end to end
            b = self.b[np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))]
        if b_idx is not None:
            b_idx = np.asarray(b_idx, np.int64)
            pos = np.minimum(np.searchsorted(b_idx, b), max(len(b_idx) - 1, 0))
            keep = b_idx[pos] == b if len(b_idx) else np.zeros(len(b), bool)
            a, b = a[keep], pos[keep]
        return Pairing(a, b, self.n_a if a_idx is None else len(a_idx), self.n_b if b_idx is None else len(b_idx))


def sorted_unique(pairs: np.ndarray) -> bool:
    """Whether the rows are already in lexicographic order without repeats (as caches store them):
    np.unique's sort, seconds and several copies at millions of pairs, is then not needed."""
    d0, d1 = np.diff(pairs[:, 0]), np.diff(pairs[:, 1])
    return bool(((d0 > 0) | ((d0 == 0) & (d1 > 0))).all())


def sample_unpaired(pairs: np.ndarray, n_images: int, n_texts: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``k`` random (image row, text row) combinations that are not in ``pairs`` (rejection
    sampling; fewer when almost every combination is paired)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    paired = np.unique(pairs[:, 0] * n_texts + pairs[:, 1])
    img, txt = [], []
    for _ in range(8):
        a = rng.integers(0, n_images, 2 * k)
        b = rng.integers(0, n_texts, 2 * k)
        ok = ~np.isin(a * n_texts + b, paired)
        img.append(a[ok])
        txt.append(b[ok])
        if sum(len(x) for x in img) >= k:
            break
    return np.concatenate(img)[:k], np.concatenate(txt)[:k]
