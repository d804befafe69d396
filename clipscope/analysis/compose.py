"""Compositional understanding: the scoring rules of SugarCrepe, ARO and Winoground.

Pure functions over similarity scores (higher = more similar); each reproduces its reference's
rule, tie handling included:

- SugarCrepe (Hsieh et al. 2023; RAIVNLab/sugar-crepe ``main_eval.py``, ``text_retrieval``): a
  case is correct iff the positive caption's score is strictly greater than the negative's, so
  a tie is wrong; accuracy per subset.
- ARO VG-Relation and VG-Attribution (Yuksekgonul et al. 2023; mertyg/vision-language-models-
  are-bows ``dataset_zoo/aro_datasets.py``, ``evaluate_scores``): scores ordered [false, true],
  correct iff ``np.argmax`` is 1; ``np.argmax`` returns the first maximum, so a tie is wrong.
  VG-Relation is reported as the macro accuracy over relations without the symmetric ones the
  reference notebook drops (``notebooks/Replicate ARO! VG-Relation, VG-Attribution.ipynb``);
  VG-Attribution as the macro accuracy over attribute pairs with at least 25 cases.
- ARO COCO/Flickr30k Order (same file, ``COCO_Order.evaluate_scores``): scores ordered
  [original, perturbations...], correct iff ``np.argmax`` is 0, so a tie with the original is
  correct.
- Winoground (Thrush et al. 2022): with ``s(c, i)`` caption c's score with image i, text score
  ``s(0,0) > s(1,0) and s(1,1) > s(0,1)``, image score ``s(0,0) > s(0,1) and s(1,1) > s(1,0)``,
  group score both; strict ``>``, so ties fail.
"""

from __future__ import annotations

import numpy as np

SUGARCREPE_SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
ARO_MIN_ATTRIBUTE_CASES = 25

# The relations the ARO reference notebook leaves out of VG-Relation's macro accuracy.
ARO_SYMMETRIC_RELATIONS = frozenset((
    "adjusting", "attached to", "between", "bigger than", "biting", "boarding", "brushing", "chewing", "cleaning",
    "climbing", "close to", "coming from", "coming out of", "contain", "crossing", "dragging", "draped over",
    "drinking", "drinking from", "driving", "driving down", "driving on", "eating from", "eating in", "enclosing",
    "exiting", "facing", "filled with", "floating in", "floating on", "flying", "flying above", "flying in",
    "flying over", "flying through", "full of", "going down", "going into", "going through", "grazing in",
    "growing in", "growing on", "guiding", "hanging from", "hanging in", "hanging off", "hanging over",
    "higher than", "holding onto", "hugging", "in between", "jumping off", "jumping on", "jumping over", "kept in",
    "larger than", "leading", "leaning over", "leaving", "licking", "longer than", "looking in", "looking into",
    "looking out", "looking over", "looking through", "lying next to", "lying on top of", "making", "mixed with",
    "mounted on", "moving", "on the back of", "on the edge of", "on the front of", "on the other side of",
    "opening", "painted on", "parked at", "parked beside", "parked by", "parked in", "parked in front of",
    "parked near", "parked next to", "perched on", "petting", "piled on", "playing", "playing in", "playing on",
    "playing with", "pouring", "reaching for", "reading", "reflected on", "riding on", "running in", "running on",
    "running through", "seen through", "sitting behind", "sitting beside", "sitting by", "sitting in front of",
    "sitting near", "sitting next to", "sitting under", "skiing down", "skiing on", "sleeping in", "sleeping on",
    "smiling at", "sniffing", "splashing", "sprinkled on", "stacked on", "standing against", "standing around",
    "standing behind", "standing beside", "standing in front of", "standing near", "standing next to",
    "staring at", "stuck in", "surrounding", "swimming in", "swinging", "talking to", "topped with", "touching",
    "traveling down", "traveling on", "tying", "typing on", "underneath", "wading in", "waiting for",
    "walking across", "walking by", "walking down", "walking next to", "walking through", "working in",
    "working on", "worn on", "wrapped around", "wrapped in", "by", "of", "near", "next to", "with", "beside",
    "on the side of", "around",
))


def sugarcrepe_correct(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Per case: the positive caption scores strictly higher than the negative (a tie is wrong)."""
    return np.asarray(positive) > np.asarray(negative)


def sugarcrepe_families(correct_by_subset: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each family's (add, replace, swap) cases pooled over its subsets; its accuracy is their
    mean, ``sum(correct) / sum(cases)``. The paper's family columns are pooled, not the mean of
    the subset accuracies: its ViT-B-32 (openai) REPLACE 80.76 is the case-weighted mean of
    90.92, 80.08 and 69.20 over 1652, 788 and 1406 cases, where the plain mean would be 80.07
    (RAIVNLab/sugar-crepe ``assets/sugarcrepe_eval.png`` and ``assets/re_eval.png``)."""
    out = {}
    for family in ("add", "replace", "swap"):
        parts = [np.asarray(c, bool) for s, c in correct_by_subset.items() if s.split("_")[0] == family]
        if parts:
            out[family] = np.concatenate(parts)
    return out


def argmax_is(scores: np.ndarray, index: int) -> np.ndarray:
    """Per row of ``scores`` (cases x options): ``np.argmax`` equals ``index``. The first of
    equal maxima wins, so a tie goes to the earlier option, as in the ARO reference."""
    return np.argmax(np.asarray(scores), axis=-1) == index


def aro_binary_correct(scores: np.ndarray) -> np.ndarray:
    """VG-Relation / VG-Attribution: options [false caption, true caption]; correct iff the true
    caption wins the argmax (a tie is wrong)."""
    return argmax_is(scores, 1)


def aro_order_correct(scores: np.ndarray) -> np.ndarray:
    """COCO / Flickr30k Order: options [original, perturbations...]; correct iff the original
    wins the argmax (a tie with it is correct)."""
    return argmax_is(scores, 0)


def grouped_accuracy(correct: np.ndarray, groups, *, min_count: int = 1, exclude=frozenset()) -> dict:
    """Accuracy per group (e.g. per relation or attribute pair) and their unweighted mean over the
    groups with at least ``min_count`` cases that are not in ``exclude``.

    Returns ``{"per_group": {group: (accuracy, count, in_macro)}, "macro": mean, "groups": n}``
    (NaN macro when no group qualifies)."""
    correct = np.asarray(correct, bool)
    groups = np.asarray(groups)
    per = {}
    for g in np.unique(groups):
        mask = groups == g
        n = int(mask.sum())
        per[str(g)] = (float(correct[mask].mean()), n, n >= min_count and str(g) not in exclude)
    kept = [a for a, _, counted in per.values() if counted]
    return {"per_group": per, "macro": float(np.mean(kept)) if kept else float("nan"), "groups": len(kept)}


def aro_relation_accuracy(correct: np.ndarray, relations) -> dict:
    """VG-Relation: macro accuracy over relations, without the reference's symmetric ones."""
    return grouped_accuracy(correct, relations, exclude=ARO_SYMMETRIC_RELATIONS)


def aro_attribution_accuracy(correct: np.ndarray, attributes) -> dict:
    """VG-Attribution: macro accuracy over attribute pairs with at least 25 cases."""
    return grouped_accuracy(correct, attributes, min_count=ARO_MIN_ATTRIBUTE_CASES)


def winoground_scores(S: np.ndarray) -> dict[str, np.ndarray]:
    """Text, image and group correctness per example from ``S[k, c, i]``, caption c's score with
    image i (strict ``>``: ties fail)."""
    S = np.asarray(S)
    text = (S[:, 0, 0] > S[:, 1, 0]) & (S[:, 1, 1] > S[:, 0, 1])
    image = (S[:, 0, 0] > S[:, 0, 1]) & (S[:, 1, 1] > S[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def winoground_ties(S: np.ndarray) -> np.ndarray:
    """Per example: whether any of the four comparisons of :func:`winoground_scores` is a tie."""
    S = np.asarray(S)
    return ((S[:, 0, 0] == S[:, 1, 0]) | (S[:, 1, 1] == S[:, 0, 1]) | (S[:, 0, 0] == S[:, 0, 1])
            | (S[:, 1, 1] == S[:, 1, 0]))


def ties(scores: np.ndarray) -> np.ndarray:
    """Per row: whether the largest score is shared by two or more options."""
    s = np.asarray(scores)
    return (s == s.max(-1, keepdims=True)).sum(-1) > 1
