"""Neighbour searches over L2-normalised rows: exact (blocked products, :mod:`clipscope.linalg`)
or through an inverted-file index (faiss ``IndexIVFFlat``, the index clip-retrieval builds for
these embeddings), for the pairs above a cosine threshold (`blindpairs`) and the k nearest
neighbours (`drift`).

The index keeps every row uncompressed, so the cosines it returns are float32 inner products;
only *which* rows are compared is approximate (a query looks in ``nprobe`` of ``nlist``
k-means cells). What it misses is measured, never assumed: :func:`range_recall` and
:func:`knn_recall` run the exact search for a seeded sample of queries and report the share
of the exact answer the index found, with its Wilson interval. Candidates near the threshold
are re-scored with the exact path's own product, so the indexed pairs are a subset of the
exact pairs (equal to them when nothing is missed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipscope.errors import ClipscopeError

# Below this many rows an exact search takes under about a minute on 2 cores (benchmarks/mining.py).
EXACT_MAX_ROWS = 100_000
SLAB = 65536  # rows read from a cache at a time (build, add, queries)
MARGIN = 1e-4  # range searches ask from threshold - MARGIN; the exact re-score decides


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise ClipscopeError("the indexed search needs faiss: pip install 'clipscope-diagnostics[index]' (faiss-cpu), or pass "
                             "--search exact (blocked, O(n^2 d)) or --search ray (exact on a Ray cluster)") from None
    return faiss


@dataclass
class IndexPlan:
    """An IVF-Flat index's parameters: ``nlist`` cells, ``nprobe`` searched per query, k-means
    trained on a seeded sample of ``train_rows`` rows."""

    nlist: int
    nprobe: int
    train_rows: int
    seed: int = 0

    @classmethod
    def for_rows(cls, n: int, *, nprobe: int | None = None, nlist: int | None = None, seed: int = 0) -> IndexPlan:
        # about sqrt(n) cells (a power of two), at least 39 training rows per cell (faiss's floor):
        # k-means and the search stay a few minutes at a million rows on 2 cores (benchmarks/mining.py)
        nlist = nlist or int(min(65536, max(1, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
        nlist = max(1, min(nlist, n // 39 or 1))
        nprobe = min(nlist, nprobe or max(8, nlist // 64))
        return cls(nlist, nprobe, min(n, max(39 * nlist, 10_000)), seed)

    @property
    def exhaustive(self) -> bool:
        return self.nprobe >= self.nlist

    def describe(self) -> str:
        return f"faiss IVF-Flat, {self.nlist} cells, {self.nprobe} searched per query, trained on {self.train_rows} rows"

    def memory(self, n: int, d: int) -> int:
        """Bytes the index holds: the rows (float32), their ids, the centroids."""
        return n * (4 * d + 8) + self.nlist * d * 4


def build_index(X, plan: IndexPlan):
    """An IVF-Flat inner-product index over X (an array or a row reader): k-means on a seeded
    sample, then the rows added ``SLAB`` at a time (never a second copy of them all)."""
    faiss = import_faiss()
    n, d = X.shape
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, plan.nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.sort(np.random.default_rng([plan.seed, 31]).choice(n, plan.train_rows, replace=False))
    index.cp.seed = plan.seed
    index.train(np.ascontiguousarray(X[sample], np.float32))
    for r0 in range(0, n, SLAB):
        index.add(np.ascontiguousarray(X[r0:r0 + SLAB], np.float32))
    index.nprobe = plan.nprobe
    return index


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``<a_k, b_k>`` per row as the exact path computes it (a float32 torch product)."""
    import torch

    ta, tb = torch.from_numpy(np.ascontiguousarray(a, np.float32)), torch.from_numpy(np.ascontiguousarray(b, np.float32))
    return (ta * tb).sum(1).numpy()


def indexed_range_pairs(X, index, threshold: float, *, queries=None):
    """Yield ``(a, b, cosine)`` batches of the pairs a < b with cosine > ``threshold`` that the
    index finds (each pair once), re-scored exactly. ``queries``: the query rows (default all,
    ``SLAB`` at a time)."""
    n = len(X)
    spans = [(r0, min(n, r0 + SLAB)) for r0 in range(0, n, SLAB)] if queries is None else [None]
    for span in spans:
        rows = np.arange(*span) if span is not None else np.asarray(queries, np.int64)
        q = np.ascontiguousarray(X[span[0]:span[1]] if span is not None else X[rows], np.float32)
        lims, _, found = index.range_search(q, float(threshold - MARGIN))
        a = np.repeat(rows, np.diff(lims).astype(np.int64))
        b = found.astype(np.int64)
        keep = a < b if queries is None else a != b
        a, b = a[keep], b[keep]
        if not len(a):
            continue
        order = np.argsort(b, kind="stable")  # readers read increasing rows
        xb = np.empty((len(b), X.shape[1]), np.float32)
        xb[order] = X[b[order]]
        xa = q[np.searchsorted(rows, a)] if span is None else q[a - span[0]]
        c = exact_product(xa, xb)
        above = c > threshold
        if above.any():
            yield a[above], b[above], c[above]


@dataclass
class Recall:
    """The share of the exact answer an indexed search found, on a sample of queries."""

    value: float
    ci95: list[float] | None
    found: int
    truth: int
    queries: int

    def describe(self, what: str) -> str:
        if not self.truth:
            return f"recall not measurable: no {what} among {self.queries} sampled queries"
        ci = f" (95% CI {self.ci95[0]:.3f}-{self.ci95[1]:.3f})" if self.ci95 else ""
        return f"recall {self.value:.3f}{ci}: {self.found} of the {self.truth} {what} of {self.queries} sampled queries"


def _recall(found: int, truth: int, queries: int) -> Recall:
    from clipscope.analysis.geometry import wilson_interval

    value = found / truth if truth else float("nan")
    return Recall(value, wilson_interval(value, truth) if truth else None, found, truth, queries)


def pooled(recalls: list[Recall]) -> Recall:
    """Several searches' recall as one (their found and exact answers added)."""
    return _recall(sum(r.found for r in recalls), sum(r.truth for r in recalls), sum(r.queries for r in recalls))


def sample_queries(n: int, m: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= m else np.sort(np.random.default_rng([seed, 37]).choice(n, m, replace=False))


def exact_range_of(X, queries: np.ndarray, threshold: float, *, device: str = "cpu") -> set[tuple[int, int]]:
    """Every (query row, row) pair with cosine > threshold, rows other than the query, by blocked products."""
    import torch

    from clipscope.linalg import gallery_slabs, similarity_tiles

    q = np.ascontiguousarray(X[queries], np.float32)
    out = set()
    for g0, part in gallery_slabs(X, SLAB, offsets=True):
        for i0, _, j0, _, s in similarity_tiles(q, part, device=device):
            ii, jj = torch.nonzero(s > threshold, as_tuple=True)
            for a, b in zip((ii + i0).tolist(), (jj + j0 + g0).tolist()):
                if queries[a] != b:
                    out.add((int(queries[a]), int(b)))
    return out


def range_recall(X, index, threshold: float, *, queries: int = 2000, seed: int = 0, device: str = "cpu") -> Recall:
    """The index's recall of the pairs above ``threshold``, on a seeded sample of query rows:
    for each, its exact pairs (blocked products over every row) against those the index finds."""
    rows = sample_queries(len(X), queries, seed)
    truth = exact_range_of(X, rows, threshold, device=device)
    found = set()
    for a, b, _ in indexed_range_pairs(X, index, threshold, queries=rows):
        found.update(zip(a.tolist(), b.tolist()))
    return _recall(len(found & truth), len(truth), len(rows))


def indexed_topk(X, index, k: int, query_rows: np.ndarray) -> np.ndarray:
    """The k nearest rows (inner product, the query excluded) of each query row, by the index."""
    out = np.empty((len(query_rows), k), np.int64)
    for s in range(0, len(query_rows), SLAB):
        rows = query_rows[s:s + SLAB]
        _, found = index.search(np.ascontiguousarray(X[rows], np.float32), k + 1)
        for i, (r, f) in enumerate(zip(rows, found)):
            f = f[(f != r) & (f >= 0)][:k]
            out[s + i, :len(f)] = f
            out[s + i, len(f):] = -1
    return out


def knn_recall(X, neighbours: np.ndarray, query_rows: np.ndarray, k: int, *, queries: int = 2000, seed: int = 0,
               device: str = "cpu") -> Recall:
    """The share of the exact k nearest neighbours the index found, on a seeded sample of the queries."""
    from clipscope.linalg import blocked_topk

    pick = sample_queries(len(query_rows), queries, seed)
    rows = query_rows[pick]
    _, exact = blocked_topk(np.asarray(X[rows]), X, k, query_rows=rows, device=device)
    found = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(exact, neighbours[pick]))
    return _recall(found, exact.size, len(rows))
