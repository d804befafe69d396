"""Representation drift between two embeddings of the same items (old and new model).

References
- Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited" (ICML): linear CKA.
- Schönemann 1966, orthogonal Procrustes (scipy.linalg.orthogonal_procrustes).
"""

from __future__ import annotations

import numpy as np

from clipscope.linalg import DEFAULT_BLOCK, angle_degrees, blocked_topk, row_blocks, zipped_rows


class CrossProducts:
    """The d x d cross-products of two row sets over the same items (row i of X and of Y), in
    float64, from one pass in row blocks (X and Y: arrays or row readers): everything linear
    CKA and orthogonal Procrustes need, so neither holds the rows."""

    def __init__(self, X, Y, block: int = 65536):
        dx, dy = X.shape[1], Y.shape[1]
        self.n = len(X)
        self.sum_x, self.sum_y = np.zeros(dx), np.zeros(dy)
        self.xx, self.yy, self.xy = np.zeros((dx, dx)), np.zeros((dy, dy)), np.zeros((dx, dy))
        for _, (x, y) in row_blocks(zipped_rows(X, Y), block):
            x, y = x.astype(np.float64), y.astype(np.float64)
            self.sum_x += x.sum(0)
            self.sum_y += y.sum(0)
            self.xx += x.T @ x
            self.yy += y.T @ y
            self.xy += x.T @ y

    def _centred(self, m: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        return m - np.outer(sa, sb) / self.n  # X_c^T Y_c = X^T Y - n mean_x mean_y^T

    def cka(self) -> float:
        """Linear CKA (Kornblith et al. 2019): ``||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)``."""
        xy = self._centred(self.xy, self.sum_x, self.sum_y)
        xx = self._centred(self.xx, self.sum_x, self.sum_x)
        yy = self._centred(self.yy, self.sum_y, self.sum_y)
        return float((xy ** 2).sum() / (np.linalg.norm(xx) * np.linalg.norm(yy)))

    def rotation(self) -> np.ndarray:
        """The orthogonal R minimising ||X R - Y||_F (Schönemann 1966): ``U V^T`` from the SVD of
        ``X^T Y``, as scipy.linalg.orthogonal_procrustes computes it."""
        u, _, vt = np.linalg.svd(self.xy)
        return u @ vt


def linear_cka(X, Y) -> float:
    """Linear CKA in feature space (Kornblith et al. 2019, Eq. for the linear kernel):

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)

    with column-centred X_c, Y_c. O(N D^2) time, O(D^2) memory; X and Y may differ in D. Equal
    to HSIC-based CKA on the N x N linear Gram matrices.
    """
    return CrossProducts(X, Y).cka()


def aligned_rows(X, Y, R: np.ndarray, block: int = 65536) -> dict:
    """Per row, the cosine of old and new (``raw``) and of old rotated by ``R`` and new
    (``aligned``); and the Procrustes ``residual`` ``||X R - Y||_F^2 / ||Y||_F^2``: one pass in
    row blocks."""
    raw, aligned = np.empty(len(X)), np.empty(len(X))
    sq_diff = sq_y = 0.0
    for i, (x, y) in row_blocks(zipped_rows(X, Y), block):
        xr = x.astype(np.float64) @ R
        raw[i:i + len(x)] = row_cosines(x, y)
        aligned[i:i + len(x)] = row_cosines(xr, y)
        sq_diff += float(((xr - y) ** 2).sum())
        sq_y += float((y.astype(np.float64) ** 2).sum())
    return {"raw": raw, "aligned": aligned, "residual": sq_diff / sq_y}


def procrustes(X, Y) -> tuple[np.ndarray, float]:
    """Orthogonal R minimising ||X R - Y||_F (rows L2-normalised, same D). Returns (R, residual)
    with residual = ||X R - Y||_F^2 / ||Y||_F^2 (0: Y is an exact rotation of X)."""
    R = CrossProducts(X, Y).rotation()
    return R, aligned_rows(X, Y, R)["residual"]


def row_cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", A, B)


def knn_overlap(X, Y, k: int = 10, *, query_rows: np.ndarray | None = None, block: int = DEFAULT_BLOCK,
                device: str = "cpu") -> np.ndarray:
    """Per query row, the Jaccard overlap |N_X(i) ∩ N_Y(i)| / |N_X(i) ∪ N_Y(i)| of its k nearest
    neighbours among all rows (cosine, itself excluded) in the old and the new space; blocked,
    so it scales. ``query_rows``: the rows asked about (a sample; default every row); X and Y
    may be row readers, read in slabs."""
    if query_rows is None:
        query_rows = np.arange(len(X))
    _, nx = blocked_topk(np.asarray(X[query_rows]), X, k, query_rows=query_rows, block=block, device=device)
    _, ny = blocked_topk(np.asarray(Y[query_rows]), Y, k, query_rows=query_rows, block=block, device=device)
    return neighbour_overlap(nx, ny)


def neighbour_overlap(nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """Per row, the Jaccard overlap of two neighbour lists (entries -1: none)."""
    out = np.empty(len(nx))
    for i in range(len(nx)):
        a, b = set(nx[i].tolist()) - {-1}, set(ny[i].tolist()) - {-1}
        out[i] = len(a & b) / max(1, len(a | b))
    return out


def rotation_angles(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-row rotation between releases (Mod-X, Ni et al. 2023, as the paper describes it):
    the angle in degrees between a sample's old and new embedding, unaligned (same D)."""
    return angle_degrees(row_cosines(X, Y))


def inter_modal_deviation(angle_image: np.ndarray, angle_text: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Mod-X's inter-modal deviation, as described: per pair (image i, text t), how differently
    the two modalities rotated, ``|theta_image(i) - theta_text(t)|`` in degrees."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return np.abs(angle_image[pairs[:, 0]] - angle_text[pairs[:, 1]])


def similarity_kl(Xi: np.ndarray, Xt: np.ndarray, Yi: np.ndarray, Yt: np.ndarray, pairs: np.ndarray, *,
                  batch: int = 256, temperature: float = 0.01) -> np.ndarray:
    """KL(old || new) between the rows of the in-batch image-text similarity matrix, the
    quantity Mod-X distils (as the paper describes it; its exact batching is not reproduced).

    Pairs are taken in consecutive batches of ``batch``; within one, row i of the similarity
    matrix is softmax_j(<I_i, T_j> / temperature) over the batch's texts, computed with the old
    (X) and the new (Y) embeddings. Returns one KL (nats) per pair.
    """
    from scipy.special import log_softmax

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.empty(len(pairs))
    chunk = batch * max(1, 65536 // batch)  # rows read for many batches at once (from a file: one read)
    for c in range(0, len(pairs), chunk):
        p = pairs[c:c + chunk]
        xi, xt, yi, yt = (np.asarray(M[p[:, col]], np.float64) for M, col in ((Xi, 0), (Xt, 1), (Yi, 0), (Yt, 1)))
        for s in range(0, len(p), batch):
            b = slice(s, s + batch)
            lo = log_softmax(xi[b] @ xt[b].T / temperature, axis=1)
            ln = log_softmax(yi[b] @ yt[b].T / temperature, axis=1)
            out[c + s:c + s + batch] = (np.exp(lo) * (lo - ln)).sum(1)
    return out
