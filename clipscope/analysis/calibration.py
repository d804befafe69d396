"""Calibration and out-of-distribution metrics for zero-shot classifiers.

References
- Guo et al. 2017, "On Calibration of Modern Neural Networks" (ICML): ECE with equal-width bins.
- Ming et al. 2022, "Delving into Out-of-Distribution Detection with Vision-Language
  Representations" (NeurIPS): MCM score.
- Tu et al. 2024, "A Holistic Evaluation of Robustness in CLIP Models".
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> tuple[float, list[dict]]:
    """ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)| over ``n_bins`` equal-width confidence bins
    (lo, hi], confidence = max probability. Returns (ece, per-bin table for a reliability diagram)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (conf > lo) & (conf <= hi)
        if inb.any():
            acc, cf = correct[inb].mean(), conf[inb].mean()
            ece += inb.mean() * abs(acc - cf)
            table.append({"lo": float(lo), "hi": float(hi), "count": int(inb.sum()), "accuracy": float(acc),
                          "confidence": float(cf)})
        else:
            table.append({"lo": float(lo), "hi": float(hi), "count": 0, "accuracy": None, "confidence": None})
    return float(ece), table


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """NLL = -mean_i log p_i(y_i)."""
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], eps)).mean())


def mcm_score(image: np.ndarray, class_text: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum concept matching (Ming et al. 2022): max_c softmax_c(cos(x, t_c) / T), T = 1.
    Rows L2-normalised. Higher means more in-distribution."""
    return softmax(image @ class_text.T / temperature).max(1)


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve with in-distribution as the positive class."""
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    return float(roc_auc_score(y, np.concatenate([id_scores, ood_scores])))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """FPR95: the share of OOD inputs scored at or above the threshold where the in-distribution
    true-positive rate (recall) is closest to ``tpr``, as MCM's ``fpr_and_fdr_at_recall``
    (deeplearning-wisc/MCM, utils/detection_util.py) picks it.

    In-distribution is the positive class. Scores are ranked high to low (a stable sort,
    reversed, so tied scores keep the reference's order); each distinct score is a threshold
    with its cumulative true and false positives; the curve up to the first threshold reaching
    full recall is walked from there back to the highest score, with (recall 1, 0 false
    positives) appended, and the first point minimising |recall - tpr| is taken.
    """
    scores = np.concatenate([np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)])
    positive = np.concatenate([np.ones(len(id_scores), bool), np.zeros(len(ood_scores), bool)])
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, positive = scores[order], positive[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # one threshold per distinct score
    tp = np.cumsum(positive, dtype=np.float64)[last_of_run]
    fp = 1 + last_of_run - tp
    full = int(np.searchsorted(tp, tp[-1]))  # first threshold with every positive above it
    recall = np.r_[(tp / tp[-1])[full::-1], 1.0]
    fp = np.r_[fp[full::-1], 0.0]
    return float(fp[int(np.argmin(np.abs(recall - tpr)))] / len(ood_scores))
