"""Transcriptions of the compositional benchmarks' scoring lines, kept as the references write
them (loops, numpy calls, dict keys), to test clipscope.analysis.compose against.

- SugarCrepe: RAIVNLab/sugar-crepe, main_eval.py, ``text_retrieval`` and ``evaluate``.
- ARO: mertyg/vision-language-models-are-bows, dataset_zoo/aro_datasets.py, the
  ``evaluate_scores`` of VG_Relation, VG_Attribution and COCO_Order, and the notebook
  "Replicate ARO! VG-Relation, VG-Attribution.ipynb" (symmetric relations dropped, then the mean).
- Winoground: the ``text_correct`` / ``image_correct`` / ``group_correct`` of its evaluation code.
"""

import numpy as np


def sugarcrepe_text_retrieval(pos_score, neg_score):
    return 1 if pos_score > neg_score else 0


def sugarcrepe_evaluate(cases):  # cases: {subset: [(pos_score, neg_score)]}
    metrics = {}
    for c, data in cases.items():
        correct_cnt = 0
        for pos, neg in data:
            correct_cnt += sugarcrepe_text_retrieval(pos, neg)
        metrics[c] = correct_cnt / len(data)
    return metrics


def aro_vg_relation(scores, all_relations, symmetric):
    """scores: N x 1 x 2 ([false, true]); the notebook's mean over non-symmetric relations."""
    preds = np.argmax(np.squeeze(scores, axis=1), axis=-1)
    correct_mask = (preds == 1)
    all_relations = np.array(all_relations)
    records = []
    for relation in np.unique(all_relations):
        relation_mask = (all_relations == relation)
        if relation_mask.sum() == 0:
            continue
        records.append({"Relation": relation, "Accuracy": correct_mask[relation_mask].mean()})
    kept = [r["Accuracy"] for r in records if r["Relation"] not in symmetric]
    return np.mean(kept)


def aro_vg_attribution(scores, all_attributes):
    preds = np.argmax(np.squeeze(scores, axis=1), axis=-1)
    correct_mask = (preds == 1)
    records = []
    all_attributes = np.array(all_attributes)
    for attr in np.unique(all_attributes):
        attr_mask = (all_attributes == attr)
        if attr_mask.sum() < 25:
            continue
        records.append({"Attributes": attr, "Accuracy": correct_mask[attr_mask].mean()})
    return np.mean([r["Accuracy"] for r in records])


def aro_order(scores):
    """scores: N x 1 x (1 + perturbations), the original first."""
    preds = np.argmax(np.squeeze(scores, axis=1), axis=-1)
    correct_mask = (preds == 0)
    return np.mean(correct_mask)


def winoground_text_correct(result):
    return result["c0_i0"] > result["c1_i0"] and result["c1_i1"] > result["c0_i1"]


def winoground_image_correct(result):
    return result["c0_i0"] > result["c0_i1"] and result["c1_i1"] > result["c1_i0"]


def winoground_group_correct(result):
    return winoground_image_correct(result) and winoground_text_correct(result)


def pre_caption(caption, max_words=50):  # ARO dataset_zoo/retrieval.py
    import re

    caption = re.sub(
        r"([.!\"()*#:;~])",
        ' ',
        caption.lower(),
    )
    caption = re.sub(
        r"\s{2,}",
        ' ',
        caption,
    )
    caption = caption.rstrip('\n')
    caption = caption.strip(' ')
    caption_words = caption.split(' ')
    if len(caption_words) > max_words:
        caption = ' '.join(caption_words[:max_words])
    return caption


def get_trigrams(sentence):  # ARO TextShuffler.get_trigrams
    trigrams = []
    trigram = []
    for i in range(len(sentence)):
        trigram.append(sentence[i])
        if i % 3 == 2:
            trigrams.append(trigram[:])
            trigram = []
    if trigram:
        trigrams.append(trigram)
    return trigrams
