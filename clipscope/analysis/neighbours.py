"""Neighbour searches over L2-normalised rows: exact (blocked products, :mod:`clipscope.linalg`)
or through an inverted-file index, for the pairs above a cosine threshold (`blindpairs`) and the
k nearest neighbours (`drift`).

The index is IVF-Flat, the structure clip-retrieval's faiss indices use for these embeddings:
k-means cells (faiss's k-means, spherical, trained on a seeded sample) and every row kept
uncompressed; a query looks in the ``nprobe`` cells whose centroids are nearest to it. Searched
cell by cell rather than query by query: for each cell, the rows that probe it are multiplied
with the rows it holds in one matrix product, so the search runs at the speed of the exact path's
products on ``nprobe / nlist`` of its work, instead of scanning lists a query at a time.

Only *which* rows are compared is approximate; every cosine is computed exactly. What the index
misses is measured, never assumed: :func:`range_recall` and :func:`knn_recall` run the exact
search for a seeded sample of queries and report the share of the exact answer the index found,
with its Wilson interval. Candidates from ``threshold - MARGIN`` are re-scored with the exact
path's own product, so the indexed pairs are a subset of the exact pairs (equal when nothing is
missed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipscope.errors import ClipscopeError

# Below this many rows an exact search takes under about a minute on 2 cores (benchmarks/mining.py).
EXACT_MAX_ROWS = 100_000
SLAB = 65536  # rows read from a cache at a time (training sample aside)
MARGIN = 1e-4  # candidates are taken from threshold - MARGIN; the exact re-score decides


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise ClipscopeError("the indexed search needs faiss: pip install 'clipscope-diagnostics[index]' (faiss-cpu), "
                             "or pass --search exact (blocked, O(n^2 d)) or --search ray (exact on a Ray cluster)") from None
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
        # about sqrt(n) cells (a power of two), at least 39 training rows per cell (faiss's floor)
        nlist = nlist or int(min(65536, max(1, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
        nlist = max(1, min(nlist, n // 39 or 1))
        nprobe = min(nlist, nprobe or max(8, nlist // 64))
        return cls(nlist, nprobe, min(n, max(39 * nlist, 10_000)), seed)

    @property
    def exhaustive(self) -> bool:
        return self.nprobe >= self.nlist

    def describe(self) -> str:
        return (f"IVF-Flat, {self.nlist} k-means cells (faiss), {self.nprobe} searched per query, trained on "
                f"{self.train_rows} rows")

    def memory(self, n: int, d: int) -> int:
        """Bytes the index holds: the rows (float32), their cells, the centroids."""
        return n * (4 * d + 4 * self.nprobe + 16) + self.nlist * d * 4


@dataclass
class CellIndex:
    """Rows grouped by their nearest k-means cell, and each row's ``nprobe`` nearest cells."""

    X: np.ndarray  # the rows, float32, in memory
    centroids: np.ndarray
    probes: np.ndarray  # (n, nprobe) cells each row looks in, nearest first (its own cell first)
    members: np.ndarray  # rows sorted by own cell
    starts: np.ndarray  # members[starts[c]:starts[c + 1]] are cell c's rows
    plan: IndexPlan

    def cell(self, c: int) -> np.ndarray:
        return self.members[self.starts[c]:self.starts[c + 1]]

    def probing(self, queries: np.ndarray) -> list[np.ndarray]:
        """For every cell, the query rows (of ``queries``) that look in it."""
        q = np.repeat(queries, self.probes.shape[1])
        cells = self.probes[queries].ravel()
        order = np.argsort(cells, kind="stable")
        bounds = np.searchsorted(cells[order], np.arange(len(self.centroids) + 1))
        return [q[order[bounds[c]:bounds[c + 1]]] for c in range(len(self.centroids))]


def build_index(X, plan: IndexPlan) -> CellIndex:
    """Spherical k-means (faiss) on a seeded sample, then every row's ``nprobe`` nearest cells,
    ``SLAB`` rows at a time. X: an array or a row reader (its rows are then read into memory)."""
    faiss = import_faiss()
    n, d = X.shape
    sample = np.sort(np.random.default_rng([plan.seed, 31]).choice(n, plan.train_rows, replace=False))
    kmeans = faiss.Kmeans(d, plan.nlist, niter=20, seed=plan.seed, spherical=True, verbose=False)
    kmeans.train(np.ascontiguousarray(X[sample], np.float32))
    centroids = kmeans.centroids
    rows = X if isinstance(X, np.ndarray) else np.empty((n, d), np.float32)
    probes = np.empty((n, plan.nprobe), np.int32)
    for r0 in range(0, n, SLAB):
        part = np.ascontiguousarray(X[r0:r0 + SLAB], np.float32)
        if rows is not X:
            rows[r0:r0 + len(part)] = part
        _, probes[r0:r0 + len(part)] = kmeans.index.search(part, plan.nprobe)
    members = np.argsort(probes[:, 0], kind="stable")
    starts = np.searchsorted(probes[members, 0], np.arange(plan.nlist + 1))
    return CellIndex(rows, centroids, probes, members, starts, plan)


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``<a_k, b_k>`` per row as the exact path computes it (a float32 torch product)."""
    import torch

    ta, tb = torch.from_numpy(np.ascontiguousarray(a, np.float32)), torch.from_numpy(np.ascontiguousarray(b, np.float32))
    return (ta * tb).sum(1).numpy()


def _cell_products(index: CellIndex, queries: np.ndarray | None, *, tile: int = 4096):
    """Yield ``(query rows, cell rows, their cosines)`` cell by cell, in tiles of at most
    ``tile`` x 4 ``tile`` (a torch matrix each)."""
    import torch

    X = torch.from_numpy(index.X)
    asking = index.probing(np.arange(len(index.X)) if queries is None else np.asarray(queries, np.int64))
    with torch.inference_mode():
        for c, q_all in enumerate(asking):
            cell = index.cell(c)
            for r0 in range(0, len(cell), 4 * tile):
                rows = cell[r0:r0 + 4 * tile]
                R = X[torch.from_numpy(rows)]
                for q0 in range(0, len(q_all), tile):
                    q = q_all[q0:q0 + tile]
                    yield q, rows, X[torch.from_numpy(q)] @ R.T


def indexed_range_pairs(index: CellIndex, threshold: float):
    """Yield ``(a, b, cosine)`` batches of the pairs a < b with cosine > ``threshold`` that the
    index finds, each once, re-scored exactly."""
    import torch

    found = []
    for q, rows, S in _cell_products(index, None):
        i, j = torch.nonzero(S > threshold - MARGIN, as_tuple=True)
        a, b = q[i.numpy()], rows[j.numpy()]
        keep = a != b
        found.append((a[keep], b[keep]))
    if not found:
        return
    a, b = (np.concatenate(x) for x in zip(*found))
    a, b = np.minimum(a, b), np.maximum(a, b)  # a pair is met from both its rows' cells: once, as a < b
    key = np.unique(a * len(index.X) + b)
    a, b = key // len(index.X), key % len(index.X)
    for s in range(0, len(a), SLAB):
        pa, pb = a[s:s + SLAB], b[s:s + SLAB]
        c = exact_product(index.X[pa], index.X[pb])
        above = c > threshold
        if above.any():
            yield pa[above], pb[above], c[above]


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


def range_recall(index: CellIndex, threshold: float, *, queries: int = 2000, seed: int = 0,
                 device: str = "cpu") -> Recall:
    """The index's recall of the pairs above ``threshold``, on a seeded sample of query rows:
    their exact pairs (blocked products over every row), and the share of them the search over
    all rows compares (one row's cell among the other's probed cells, either way round; compared
    pairs above the threshold are kept, as the re-score is exact)."""
    rows = sample_queries(len(index.X), queries, seed)
    truth = np.array(sorted(exact_range_of(index.X, rows, threshold, device=device)), np.int64).reshape(-1, 2)
    q, v = truth[:, 0], truth[:, 1]
    own = index.probes[:, 0]
    # the search over all rows meets a pair from either row's probes (and keeps it once)
    met = (index.probes[q] == own[v][:, None]).any(1) | (index.probes[v] == own[q][:, None]).any(1)
    return _recall(int(met.sum()), len(truth), len(rows))


def indexed_topk(index: CellIndex, k: int, query_rows: np.ndarray) -> np.ndarray:
    """The k nearest rows (inner product, the query excluded; -1 where fewer) of each query row,
    among the rows of the cells it probes."""
    import torch

    query_rows = np.asarray(query_rows, np.int64)
    pos = np.full(len(index.X), -1, np.int64)
    pos[query_rows] = np.arange(len(query_rows))
    best_v = torch.full((len(query_rows), k), -torch.inf)
    best_i = torch.full((len(query_rows), k), -1, dtype=torch.long)
    for q, rows, S in _cell_products(index, query_rows):
        S[torch.from_numpy(q)[:, None] == torch.from_numpy(rows)[None, :]] = -torch.inf  # not itself
        p = torch.from_numpy(pos[q])
        cand_v = torch.cat([best_v[p], S], 1)
        cand_i = torch.cat([best_i[p], torch.from_numpy(rows).expand(len(q), -1)], 1)
        top_v, order = torch.topk(cand_v, k, dim=1)
        best_v[p], best_i[p] = top_v, torch.gather(cand_i, 1, order)
    out = best_i.numpy()
    out[~np.isfinite(best_v.numpy())] = -1
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
