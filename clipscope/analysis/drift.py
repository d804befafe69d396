"""Representation drift between two embeddings of the same items (old and new model).

References
- Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited" (ICML): linear CKA.
- Schönemann 1966, orthogonal Procrustes (scipy.linalg.orthogonal_procrustes).
"""

from __future__ import annotations

import numpy as np

from clipscope.linalg import DEFAULT_BLOCK, blocked_topk


def _centered_cross(X: np.ndarray, Y: np.ndarray, block: int = 65536) -> np.ndarray:
    """X_c^T Y_c in float64, by row blocks (column-centred, without forming X_c)."""
    n = len(X)
    acc = np.zeros((X.shape[1], Y.shape[1]))
    for i in range(0, n, block):
        acc += X[i:i + block].astype(np.float64).T @ Y[i:i + block].astype(np.float64)
    mx, my = X.mean(0, dtype=np.float64), Y.mean(0, dtype=np.float64)
    return acc - n * np.outer(mx, my)


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA in feature space (Kornblith et al. 2019, Eq. for the linear kernel):

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)

    with column-centred X_c, Y_c. O(N D^2) time, O(D^2) memory; X and Y may differ in D. Equal
    to HSIC-based CKA on the N x N linear Gram matrices.
    """
    xy = _centered_cross(X, Y)
    xx = _centered_cross(X, X)
    yy = _centered_cross(Y, Y)
    return float((xy ** 2).sum() / (np.linalg.norm(xx) * np.linalg.norm(yy)))


def procrustes(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """Orthogonal R minimising ||X R - Y||_F (rows L2-normalised, same D). Returns (R, residual)
    with residual = ||X R - Y||_F^2 / ||Y||_F^2 (0: Y is an exact rotation of X)."""
    from scipy.linalg import orthogonal_procrustes

    R, _ = orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    diff = X.astype(np.float64) @ R - Y
    return R, float((diff ** 2).sum() / (Y.astype(np.float64) ** 2).sum())


def row_cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", A, B)


def knn_overlap(X: np.ndarray, Y: np.ndarray, k: int = 10, *, block: int = DEFAULT_BLOCK, device: str = "cpu") -> np.ndarray:
    """Per-row Jaccard overlap |N_X(i) ∩ N_Y(i)| / |N_X(i) ∪ N_Y(i)| of the k nearest neighbours
    (cosine, self excluded) in the old and the new space; blocked, so it scales."""
    _, nx = blocked_topk(X, X, k, exclude_self=True, block=block, device=device)
    _, ny = blocked_topk(Y, Y, k, exclude_self=True, block=block, device=device)
    out = np.empty(len(X))
    for i in range(len(X)):
        a, b = set(nx[i].tolist()), set(ny[i].tolist())
        out[i] = len(a & b) / len(a | b)
    return out


def rotation_angles(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-row rotation between releases (Mod-X, Ni et al. 2023, as the paper describes it):
    the angle in degrees between a sample's old and new embedding, unaligned (same D)."""
    return np.degrees(np.arccos(np.clip(row_cosines(X, Y), -1.0, 1.0)))


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
    for s in range(0, len(pairs), batch):
        p = pairs[s:s + batch]
        lo = log_softmax(Xi[p[:, 0]].astype(np.float64) @ Xt[p[:, 1]].T / temperature, axis=1)
        ln = log_softmax(Yi[p[:, 0]].astype(np.float64) @ Yt[p[:, 1]].T / temperature, axis=1)
        out[s:s + batch] = (np.exp(lo) * (lo - ln)).sum(1)
    return out
