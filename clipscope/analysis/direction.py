"""The residual direction between two groups of rows (RAVE).

RAVE (Residual Vector Embedding, CLIP-guided image enhancement; MACderRu/RAVE ``train_rave.py``)
guides an enhancement model with the direction from one image group to another (backlit to
well-lit). For groups A and B of L2-normalised rows of one modality, as the reference computes
it: each group's mean is normalised, the two unit means are subtracted, and the difference is
normalised::

    u_A = mean(A) / ||mean(A)||,   u_B = mean(B) / ||mean(B)||,   d = (u_A - u_B) / ||u_A - u_B||

- ``vector``: d (unit length), the direction saved for reuse as guidance;
- ``angle``: the angle between u_A and u_B in degrees (||u_A - u_B|| = 2 sin(angle / 2)),
  how far apart the two groups point (defined by clipscope, from the same quantities);
- ``mean_distance``: ||mean(A) - mean(B)||, the raw distance between the group centroids
  (defined by clipscope; it depends on each group's spread, which RAVE's normalised means
  remove). Its 95% interval is about the bias-corrected estimate of ||mu_A - mu_B|| (the
  unbiased U-statistic for the square; the groups are independent samples);
- ``auroc``: how well the projection <x, d> separates A (positive) from B, in sample (the rows
  that made d): an upper bound on held-out separation, and 1.0 by construction when both groups
  have one row, so it needs at least two rows per group;
- ``text_cosine``: cosine between d and a text direction computed the same way from two prompt
  sets, when one is given.
"""

from __future__ import annotations

import numpy as np

from clipscope.errors import ClipscopeError

MIN_ROWS_FOR_AUROC = 2


def unit_mean(X: np.ndarray) -> np.ndarray:
    """The group's mean row, normalised (float64)."""
    m = np.asarray(X, np.float64).mean(0)
    norm = float(np.linalg.norm(m))
    if norm == 0:
        raise ClipscopeError("a group's rows cancel out (their mean is zero): it has no direction")
    return m / norm


def rave_direction(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, float]:
    """RAVE's unit residual direction from B to A, and ||u_A - u_B|| before normalising."""
    raw = unit_mean(A) - unit_mean(B)
    size = float(np.linalg.norm(raw))
    if size < 1e-9:
        raise ClipscopeError("the two groups' mean directions coincide (identical prompt sets, or the same rows): "
                             "there is no direction between them; choose two different groups")
    return raw / size, size


def direction_stats(A: np.ndarray, B: np.ndarray, *, text_direction: np.ndarray | None = None) -> dict:
    """The residual direction between groups A and B and how it separates them (see the module
    docstring). ``text_direction``: a unit text direction (:func:`rave_direction` of two prompt sets)."""
    from clipscope.analysis.calibration import auroc
    from clipscope.analysis.geometry import centroid_gap_estimate

    unit, size = rave_direction(A, B)
    mean_distance = float(np.linalg.norm(np.asarray(A, np.float64).mean(0) - np.asarray(B, np.float64).mean(0)))
    enough = min(len(A), len(B)) >= MIN_ROWS_FOR_AUROC
    estimate, ci = centroid_gap_estimate(np.asarray(A, np.float32), np.asarray(B, np.float32), None) \
        if enough else (mean_distance, None)
    sa, sb = np.asarray(A, np.float64) @ unit, np.asarray(B, np.float64) @ unit
    out = {"vector": unit, "angle": float(np.degrees(2 * np.arcsin(min(1.0, size / 2)))),
           "mean_distance": mean_distance, "estimate": estimate, "ci95": ci,
           "auroc": auroc(sa, sb) if enough else None, "scores_a": sa, "scores_b": sb}
    if text_direction is not None:
        out["text_cosine"] = float(unit @ np.asarray(text_direction, np.float64))
    return out
