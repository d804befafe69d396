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
    """False-positive rate on OOD data at the first ROC threshold where the in-distribution
    true-positive rate reaches ``tpr`` (FPR95 for 0.95)."""
    from sklearn.metrics import roc_curve

    y = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    fpr, tp, _ = roc_curve(y, np.concatenate([id_scores, ood_scores]), drop_intermediate=False)
    return float(fpr[np.searchsorted(tp, tpr, side="left")])
