"""Retrieval metrics, computed in blocks.

Recall@k for cross-modal retrieval over pairs (a query is right when one of its paired
targets ranks within the top k), and the label-based metrics of Cross the Gap's retrieval
evaluation (mAP, mAP@R, precision@R, recall@1) for intra- and inter-modal retrieval.
"""

from __future__ import annotations

import numpy as np

from clipscope.linalg import DEFAULT_BLOCK, gallery_slabs, similarity_tiles

TIE_TOLERANCE = 1e-5  # float32 dot products of unit vectors agree to ~1e-6


def _best_correct(queries: np.ndarray, gallery: np.ndarray, q_idx: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
    sims = np.einsum("ij,ij->i", queries[q_idx], gallery[g_idx])
    best = np.full(len(queries), -np.inf, np.float32)
    np.maximum.at(best, q_idx, sims.astype(np.float32))
    return best


def recall_at_k(queries: np.ndarray, gallery: np.ndarray, correct: np.ndarray, ks=(1, 5), *,
                block: int = DEFAULT_BLOCK, device: str = "cpu") -> dict[int, float]:
    """Fraction of queries whose best-ranked correct gallery row is within the top k.

    ``correct`` is an (M, 2) array of (query row, gallery row) matches; queries without any
    match are left out. Rows must be L2-normalised (cosine similarity). The rank of a query is
    the number of gallery rows more similar than its most similar correct row by more than
    ``TIE_TOLERANCE``, so ties count in the query's favour. ``gallery`` may be a row reader
    (read in slabs). (The tolerance absorbs float32
    rounding: the correct row's similarity, computed once per pair, may differ in the last bits
    from the same similarity inside a tile, and must never rank the row behind itself.)
    """
    import torch

    correct = np.asarray(correct, np.int64).reshape(-1, 2)
    best = _best_correct(queries, gallery, correct[:, 0], correct[:, 1])
    has = np.isfinite(best)
    best_t = torch.from_numpy(best).to(device)
    ahead = torch.zeros(len(queries), dtype=torch.long, device=device)
    for part in gallery_slabs(gallery):
        for i0, i1, _j0, _j1, s in similarity_tiles(queries, part, block=block, device=device):
            ahead[i0:i1] += (s > best_t[i0:i1, None] + TIE_TOLERANCE).sum(1)
    rank = ahead.cpu().numpy()[has]
    return {k: float((rank < k).mean()) if len(rank) else float("nan") for k in ks}


ONE_PASS_MAX_ENTRIES = 64_000_000  # 256 MB of float32 similarities


def cross_modal_recall(image: np.ndarray, text: np.ndarray, pairs: np.ndarray, ks=(1, 5), **kw) -> dict[str, float]:
    """Image-to-text and text-to-image recall@k over the pairs (image row, text row).

    Up to :data:`ONE_PASS_MAX_ENTRIES` similarities, one image x text matrix serves both
    directions (rows for image queries, columns for text queries); above, each direction is
    computed in tiles by :func:`recall_at_k`. Both follow the same rank rule.
    """
    pairs = np.asarray(pairs, np.int64)
    if len(image) * len(text) <= ONE_PASS_MAX_ENTRIES and not kw.get("device", "cpu").startswith("cuda"):
        return _cross_modal_recall_one_pass(image, text, pairs, ks)
    i2t = recall_at_k(image, text, pairs, ks, **kw)
    t2i = recall_at_k(text, image, pairs[:, ::-1], ks, **kw)
    out = {f"i2t_recall@{k}": v for k, v in i2t.items()}
    out.update({f"t2i_recall@{k}": v for k, v in t2i.items()})
    return out


def _cross_modal_recall_one_pass(image, text, pairs, ks) -> dict[str, float]:
    import torch

    S = torch.from_numpy(np.ascontiguousarray(image, np.float32)) @ torch.from_numpy(np.ascontiguousarray(text, np.float32)).T
    return recall_from_similarities(S, pairs, ks)


def recall_from_similarities(S, pairs: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Both directions' recall@k from the whole image x text similarity matrix ``S`` (a CPU
    torch tensor or an array): the rank rule of :func:`recall_at_k`, rows for image queries,
    columns for text queries. Counted in numpy, whose boolean counts are ~4x torch's here."""
    S = S.numpy() if hasattr(S, "numpy") else np.asarray(S)
    pairs = np.asarray(pairs, np.int64)
    a, b = pairs[:, 0], pairs[:, 1]
    correct = S[a, b]
    best_i, best_t = np.full(S.shape[0], -np.inf, S.dtype), np.full(S.shape[1], -np.inf, S.dtype)
    np.maximum.at(best_i, a, correct)
    np.maximum.at(best_t, b, correct)
    tol = S.dtype.type(TIE_TOLERANCE)
    rank_i = np.count_nonzero(S > (best_i + tol)[:, None], axis=1)[np.isfinite(best_i)]
    rank_t = np.count_nonzero(S > (best_t + tol)[None, :], axis=0)[np.isfinite(best_t)]
    out = {f"i2t_recall@{k}": float((rank_i < k).mean()) if len(rank_i) else float("nan") for k in ks}
    out.update({f"t2i_recall@{k}": float((rank_t < k).mean()) if len(rank_t) else float("nan") for k in ks})
    return out


def zero_shot_accuracy(image: np.ndarray, class_text: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of argmax_c <image, class_text_c> (rows L2-normalised)."""
    pred = predict_classes(image, class_text)
    return float((pred == np.asarray(labels)).mean())


def predict_classes(image: np.ndarray, class_text: np.ndarray, block: int = 65536) -> np.ndarray:
    out = np.empty(len(image), np.int64)
    for i in range(0, len(image), block):
        out[i:i + block] = (image[i:i + block] @ class_text.T).argmax(1)
    return out


def label_retrieval(queries: np.ndarray, gallery: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray,
                    *, same_set: bool = False, block: int | None = None, per_query: bool = False) -> dict:
    """Label-based retrieval metrics, averaged over queries (in percent, as Cross the Gap reports).

    A gallery row is relevant to a query when their labels are equal; with ``same_set`` the
    query itself is removed from the gallery. With R the number of relevant rows of a query and
    the gallery ranked by decreasing cosine:

    - mAP: mean over queries of AP = (1/R) sum_{k: rel(k)} precision@k over the whole ranking;
    - mAP@R: the same, truncated at rank K: (1/min(R, K)) sum_{k<=K, rel(k)} precision@k, where
      K = R for a separate gallery and, as in the reference code (``relevant_per_query`` is
      counted before the query leaves the gallery), K = R + 1 when query and gallery are one set;
    - precision@R: (relevant rows in the top R) / R, with R counted after the query is removed;
    - recall@1: whether the top-ranked row is relevant.

    A query with no relevant row counts as 0 in mAP, precision@R and recall@1, as the reference's
    ``compute_metrics`` (torchmetrics returns 0 for it); its mAP@R is 0/0 in the reference, which
    makes the whole mean NaN, so mAP@R is averaged over the queries that have a relevant row
    (a deliberate deviation) and ``"no_relevant"`` counts the others. With ``per_query`` the
    result also holds ``"ap"``: each query's AP (NaN where it has no relevant row). References:
    Musgrave et al. 2020 (A Metric Learning Reality Check: MAP@R); Mistretta et al. 2025 (Cross
    the Gap, src/retrieval.py compute_metrics).
    """
    qlab = np.asarray(query_labels)
    glab = np.asarray(gallery_labels)
    # Each block ranks its queries against the whole gallery: keep block x gallery near 4M entries.
    block = block or max(1, min(1024, 4_000_000 // max(1, len(gallery))))
    sums = {"mAP": 0.0, "mAP@R": 0.0, "precision@R": 0.0, "recall@1": 0.0}
    count = 0
    ap_all = np.full(len(queries), np.nan)
    for i0 in range(0, len(queries), block):
        s = queries[i0:i0 + block] @ gallery.T
        if same_set:
            idx = np.arange(i0, min(len(queries), i0 + block))
            s[idx - i0, idx] = -np.inf
        order = np.argsort(-s, axis=1, kind="stable")
        rel = glab[order] == qlab[i0:i0 + block, None]
        if same_set:  # the removed query sits last in the ranking; never relevant
            rel[:, -1] = False
        r = rel.sum(1)
        keep = r > 0
        rel, r = rel[keep], r[keep]
        hits = np.cumsum(rel, axis=1)
        ranks = np.arange(1, rel.shape[1] + 1)
        prec = hits / ranks
        ap = (prec * rel).sum(1) / r
        ap_all[np.arange(i0, i0 + len(keep))[keep]] = ap
        sums["mAP"] += float(ap.sum())
        within_r = ranks[None, :] <= r[:, None]
        k_map = r + 1 if same_set else r
        within_k = ranks[None, :] <= k_map[:, None]
        sums["mAP@R"] += float(((prec * rel * within_k).sum(1) / np.minimum(r, k_map)).sum())
        sums["precision@R"] += float(((rel * within_r).sum(1) / r).sum())
        sums["recall@1"] += float(rel[:, 0].sum())
        count += int(keep.sum())
    n = len(queries)
    out = {k: 100.0 * v / n if n else float("nan") for k, v in sums.items()}
    out["mAP@R"] = 100.0 * sums["mAP@R"] / count if count else float("nan")
    out["no_relevant"] = n - count
    if per_query:
        out["ap"] = 100.0 * ap_all
    return out
