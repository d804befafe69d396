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

from clipscope.linalg import DEFAULT_BLOCK, to_torch


@dataclass
class BlindPairs:
    a: np.ndarray            # row indices, a < b
    b: np.ndarray
    clip_cosine: np.ndarray
    reference_cosine: np.ndarray
    n_blind: int             # all blind pairs, also those beyond ``top``
    in_any: np.ndarray       # bool per row: in at least one blind pair
    n_clip_similar: int      # pairs above the CLIP threshold alone


def exact_similar_pairs(clip: np.ndarray, threshold: float, *, block: int = DEFAULT_BLOCK, device: str = "cpu",
                        tiles=None):
    """Yield ``(a, b, cosine)`` numpy batches of every pair a < b with cosine > ``threshold``,
    walking the upper triangle of the similarity matrix in tiles (``tiles``: only these
    ``(i0, j0)`` tiles, e.g. one Ray task's share)."""
    import torch

    n = len(clip)
    if isinstance(clip, np.ndarray):
        whole = to_torch(clip, device)
        rows = lambda r0: whole[r0:r0 + block]  # noqa: E731
    else:  # a row reader: each tile's rows read from the file (the row block kept while it lasts)
        held = {}

        def rows(r0):
            if r0 not in held:
                if len(held) > 1:
                    held.pop(next(iter(held)))
                held[r0] = to_torch(np.asarray(clip[r0:r0 + block]), device)
            return held[r0]
    with torch.inference_mode():
        for i0, j0 in tiles if tiles is not None else upper_tiles(n, block):
            s = rows(i0) @ rows(j0).T
            mask = s > threshold
            if i0 == j0:
                mask = torch.triu(mask, diagonal=1)
            ii, jj = torch.nonzero(mask, as_tuple=True)
            if len(ii):
                yield ((ii + i0).cpu().numpy().astype(np.int64), (jj + j0).cpu().numpy().astype(np.int64),
                       s[ii, jj].cpu().numpy().astype(np.float32))


def upper_tiles(n: int, block: int) -> list[tuple[int, int]]:
    """The ``(i0, j0)`` corners of the upper-triangle tiles (j0 >= i0), in the order walked."""
    return [(i0, j0) for i0 in range(0, n, block) for j0 in range(i0, n, block)]


def mine_blind_pairs(clip, reference, *, clip_threshold: float = 0.95, ref_threshold: float = 0.6,
                     top: int | None = None, block: int = DEFAULT_BLOCK, device: str = "cpu",
                     candidates=None) -> BlindPairs:
    """All pairs i < j with ``clip_i . clip_j > clip_threshold`` and ``ref_i . ref_j < ref_threshold``.

    Rows of both must be L2-normalised and row-aligned (row i is the same image). The CLIP
    pairs above the threshold come from ``candidates`` (batches ``(a, b, cosine)``: an indexed
    search, or Ray tasks' tiles), by default from :func:`exact_similar_pairs`; the reference
    cosine is computed only for them (``reference``: an array or a row reader). Memory is
    bounded by the batches and by ``top``: the pairs kept are the ``top`` with the largest
    ``clip_cosine - reference_cosine`` (all when None); the counts always cover every blind pair.
    """
    from clipscope.analysis.neighbours import exact_product

    n = len(clip)
    if candidates is None:
        candidates = exact_similar_pairs(clip, clip_threshold, block=block, device=device)
    in_any = np.zeros(n, bool)
    kept = []
    n_blind = n_similar = 0
    for ga, gb, c in candidates:
        n_similar += len(ga)
        r = exact_product(reference[ga], reference[gb])
        blind = r < ref_threshold
        if not blind.any():
            continue
        ga, gb, c, r = ga[blind], gb[blind], c[blind], r[blind]
        n_blind += len(ga)
        in_any[ga] = True
        in_any[gb] = True
        kept.append((ga, gb, c, r))
        if top is not None and sum(len(x[0]) for x in kept) > 4 * top:
            kept = [_keep_top(kept, top)]
    a, b, c, r = (np.concatenate([x[k] for x in kept]) if kept else np.zeros(0, t)
                  for k, t in enumerate((np.int64, np.int64, np.float32, np.float32)))
    if top is not None and len(a) > top:
        a, b, c, r = _keep_top([(a, b, c, r)], top)
    order = np.argsort(-(c - r), kind="stable")
    return BlindPairs(a[order], b[order], c[order], r[order], int(n_blind), in_any, int(n_similar))


def _keep_top(kept: list, top: int) -> tuple:
    """The ``top`` kept pairs with the largest clip - reference cosine (ties: the earlier found)."""
    a, b, c, r = (np.concatenate([x[k] for x in kept]) for k in range(4))
    idx = np.sort(np.argsort(-(c - r), kind="stable")[:top])
    return a[idx], b[idx], c[idx], r[idx]


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
