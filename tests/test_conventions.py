"""Evaluation conventions of the reference code, each against a transcription of its lines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clipscope.analysis.calibration import fpr_at_tpr
from clipscope.analysis.geometry import cone, relative_modality_gap


def _mcm_fpr_and_fdr_at_recall(y_true, y_score, recall_level=0.95):
    """deeplearning-wisc/MCM utils/detection_util.py fpr_and_fdr_at_recall (pos_label 1), transcribed."""
    y_true = y_true == 1
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    thr_idx = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[thr_idx]
    fps = 1 + thr_idx - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))


@pytest.mark.parametrize("seed", range(6))
def test_fpr95_equals_mcm(seed):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(5, 300, 2)
    id_s, ood_s = rng.normal(1, 1, n_id), rng.normal(0, 1, n_ood)
    if seed % 2:  # heavy ties, as softmax scores of a small model produce
        id_s, ood_s = np.round(id_s, 1), np.round(ood_s, 1)
    y = np.r_[np.ones(n_id), np.zeros(n_ood)]
    ref = _mcm_fpr_and_fdr_at_recall(y, np.r_[id_s, ood_s])
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(ref, abs=1e-12)


def test_fpr95_differs_from_the_first_threshold_rule_where_mcm_says_so():
    """20 ID scores: recall moves in steps of 0.05, so 0.95 is hit exactly; with 10 ID scores the
    closest recall (0.9 vs 1.0: a tie, the first in the reversed walk wins) decides."""
    id_s = np.arange(10, dtype=float)
    ood_s = np.array([0.5, 1.5, 8.5])
    y = np.r_[np.ones(10), np.zeros(3)]
    assert fpr_at_tpr(id_s, ood_s) == pytest.approx(_mcm_fpr_and_fdr_at_recall(y, np.r_[id_s, ood_s]))


def _reference_rmg(I, T, labels):
    """lmb-freiburg/two-effects-one-trigger analysis/gap_precompute.py compute_rmg (imagenet
    branch: each image paired with its label's prompt), transcribed in numpy."""
    Tp = T[labels]
    m = np.sum(I * Tp, axis=1).mean()
    m = 1 - (m + 1) / 2
    m = m if m > 0 else 1e-3
    ixi = I @ I.T
    np.fill_diagonal(ixi, 0)
    mi = 1 - (ixi.sum() / (math.prod(ixi.shape) - ixi.shape[0]) + 1) / 2
    txt = T @ T.T
    np.fill_diagonal(txt, 0)
    mt = 1 - (txt.sum() / (math.prod(txt.shape) - txt.shape[0]) + 1) / 2
    return m / (m + (mi + mt) / 2)


@pytest.mark.parametrize("noise", [0.8, 0.0004, 0.0])
def test_rmg_equals_the_reference(noise):
    """Including paired cosines so close to 1 that d is positive but below 1e-3 (kept as is)
    and exactly 1 (d = 0, replaced by 1e-3)."""
    rng = np.random.default_rng(0)
    T = rng.normal(size=(5, 16))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    labels = rng.integers(0, 5, 60)
    I = T[labels] + noise * rng.normal(size=(60, 16))
    I /= np.linalg.norm(I, axis=1, keepdims=True)
    paired = float(np.sum(I * T[labels], axis=1).mean())
    ours = relative_modality_gap(paired, cone(I.astype(np.float32)), cone(T.astype(np.float32)))
    assert ours == pytest.approx(_reference_rmg(I, T, labels), abs=1e-6)
    if noise == 0.0004:
        assert 0 < 1 - (paired + 1) / 2 < 1e-3  # the case the old clamp changed
