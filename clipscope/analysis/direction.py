"""The residual direction between two groups of rows (RAVE).

RAVE (Residual Vector Embedding, CLIP-guided image enhancement) takes the difference of the
mean CLIP embeddings of two image groups (e.g. well-lit minus backlit photographs) as a
guidance direction. For groups A and B of L2-normalised rows of one modality::

    r = mean(A) - mean(B)

- ``norm``: ||r|| (plug-in, as the reference computes it); its 95% interval is around the
  bias-corrected estimate of ||mu_A - mu_B|| (the unbiased U-statistic for the squared norm,
  :func:`clipscope.analysis.geometry.centroid_gap_estimate` with no pairing: the groups are
  independent samples), whose coverage tests/test_gap_structure.py simulates.
- ``auroc``: how well the projection <x, r/||r||> separates A (positive) from B.
- ``text_cosine``: cosine between r and a text direction (the same difference over two prompt
  sets), when one is given.
"""

from __future__ import annotations

import numpy as np


def residual(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """mean(A) - mean(B), accumulated in float64."""
    return np.asarray(A, np.float64).mean(0) - np.asarray(B, np.float64).mean(0)


def direction_stats(A: np.ndarray, B: np.ndarray, *, text_direction: np.ndarray | None = None) -> dict:
    """The residual between groups A and B and how it separates them (see the module docstring)."""
    from clipscope.analysis.calibration import auroc
    from clipscope.analysis.geometry import centroid_gap_estimate

    r = residual(A, B)
    norm = float(np.linalg.norm(r))
    unit = r / norm if norm > 0 else r
    estimate, ci = centroid_gap_estimate(np.asarray(A, np.float32), np.asarray(B, np.float32), None) \
        if len(A) > 1 and len(B) > 1 else (norm, None)
    sa, sb = np.asarray(A, np.float64) @ unit, np.asarray(B, np.float64) @ unit
    out = {"vector": r, "norm": norm, "estimate": estimate, "ci95": ci, "auroc": auroc(sa, sb), "scores_a": sa,
           "scores_b": sb}
    if text_direction is not None:
        t = np.asarray(text_direction, np.float64)
        out["text_cosine"] = float(r @ t / (norm * np.linalg.norm(t))) if norm > 0 and np.linalg.norm(t) > 0 else None
    return out
