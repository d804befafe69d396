"""CLIP-blind pairs and MMVP-style pair scoring (Tong et al., CVPR 2024, "Eyes Wide Shut?
Exploring the Visual Shortcomings of Multimodal LLMs"; reference repository tsb0601/MMVP).

A pair of images (a, b) is CLIP-blind when the CLIP model embeds them almost identically,
``cos_clip(a, b) > clip_threshold`` (0.95), while a vision-only reference model sees them as
clearly different, ``cos_ref(a, b) < ref_threshold`` (0.6).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from clipscope.linalg import DEFAULT_BLOCK, similarity_tiles, to_torch


@dataclass
class BlindPairs:
    a: np.ndarray            # row indices, a < b
    b: np.ndarray
    clip_cosine: np.ndarray
    reference_cosine: np.ndarray
    n_blind: int             # all blind pairs, also those beyond ``top``
    in_any: np.ndarray       # bool per row: in at least one blind pair
    n_clip_similar: int      # pairs above the CLIP threshold alone


def mine_blind_pairs(clip: np.ndarray, reference: np.ndarray, *, clip_threshold: float = 0.95,
                     ref_threshold: float = 0.6, top: int | None = None, block: int = DEFAULT_BLOCK,
                     device: str = "cpu") -> BlindPairs:
    """All pairs i < j with ``clip_i . clip_j > clip_threshold`` and ``ref_i . ref_j < ref_threshold``.

    Rows of both arrays must be L2-normalised and row-aligned (row i is the same image). The
    CLIP similarity matrix is walked in upper-triangle tiles; the reference cosine is computed
    only for the pairs above the CLIP threshold. Memory is bounded by the tile and by ``top``:
    the pairs kept are the ``top`` with the largest ``clip_cosine - reference_cosine`` (all when
    None); the counts always cover every blind pair.
    """
    import torch

    ref_t = to_torch(reference, device)
    n = len(clip)
    in_any = torch.zeros(n, dtype=torch.bool, device=device)
    kept = {k: [] for k in ("a", "b", "c", "r")}
    n_blind = n_similar = 0
    for i0, _, j0, _, s in similarity_tiles(clip, None, block=block, device=device, upper=True):
        mask = s > clip_threshold
        if i0 == j0:
            mask = torch.triu(mask, diagonal=1)
        ii, jj = torch.nonzero(mask, as_tuple=True)
        if len(ii) == 0:
            continue
        n_similar += len(ii)
        ga, gb = ii + i0, jj + j0
        r = (ref_t[ga] * ref_t[gb]).sum(1)
        blind = r < ref_threshold
        if not bool(blind.any()):
            continue
        ga, gb, c, r = ga[blind], gb[blind], s[ii[blind], jj[blind]], r[blind]
        n_blind += len(ga)
        in_any[ga] = True
        in_any[gb] = True
        for k, v in zip("abcr", (ga, gb, c, r)):
            kept[k].append(v)
        if top is not None and sum(len(x) for x in kept["a"]) > 4 * top:
            kept = _keep_top({k: torch.cat(v) for k, v in kept.items()}, top)
    cat = {k: torch.cat(v) if v else torch.zeros(0, device=device) for k, v in kept.items()}
    if top is not None and len(cat["a"]) > top:
        cat = {k: v[0] for k, v in _keep_top(cat, top).items()}
    order = torch.argsort(-(cat["c"] - cat["r"]), stable=True) if len(cat["a"]) else torch.zeros(0, dtype=torch.long)
    np_ = lambda t: t[order].cpu().numpy()  # noqa: E731
    return BlindPairs(np_(cat["a"]).astype(np.int64), np_(cat["b"]).astype(np.int64), np_(cat["c"]).astype(np.float32),
                      np_(cat["r"]).astype(np.float32), int(n_blind), in_any.cpu().numpy(), int(n_similar))


def _keep_top(cat: dict, top: int) -> dict:
    import torch

    score = cat["c"] - cat["r"]
    idx = torch.topk(score, min(top, len(score))).indices
    return {k: [v[idx]] for k, v in cat.items()}


# --------------------------------------------------------------------------- MMVP-style scoring


def score_pairs(image_features: np.ndarray, text_features: np.ndarray, patterns: list[str],
                logit_scale: float = 100.0, targets: np.ndarray | None = None) -> dict:
    """Score statement pairs as the MMVP-VLM reference script does.

    ``image_features`` and ``text_features`` are (P, 2, D), L2-normalised: pair p has images
    (1, 2) and statements (1, 2), statement k describing image k. For each statement, a softmax
    over its similarity (times ``logit_scale``) to the pair's two images picks image 1 when its
    probability exceeds 0.5. A pair counts as correct only when both statements pick their own
    image (``targets`` (P, 2) overrides which image each statement describes; the reference
    derives it from the question id: image 1 for odd ids). Returns per-pair predictions,
    per-pattern accuracy (in %) and their mean.
    """
    targets = np.tile([0, 1], (len(patterns), 1)) if targets is None else np.asarray(targets)
    logits = logit_scale * np.einsum("pkd,pjd->pkj", text_features, image_features)  # statement k vs image j
    logits = logits - logits.max(-1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    picks_first = probs[:, :, 0] > 0.5
    pred = np.where(picks_first, 0, 1)
    correct = (pred == targets).all(1)
    by_pattern = defaultdict(list)
    for p, ok in zip(patterns, correct):
        by_pattern[p].append(bool(ok))
    per_pattern = {p: 100.0 * float(np.mean(v)) for p, v in by_pattern.items()}
    return {
        "correct": correct, "img1_prob": probs[:, :, 0], "per_pattern": per_pattern,
        "mean": float(np.mean(list(per_pattern.values()))) if per_pattern else float("nan"),
        "pairs_correct": int(correct.sum()), "pairs": int(len(correct)),
    }
