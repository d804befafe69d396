"""Where every reported number comes from: the paper and, where there is one, the reference
function; or "defined by clipscope". :func:`clipscope.report.build_report` appends the source
to each metric's description and refuses a metric that has none, so no number leaves clipscope
without saying where it comes from.

Names are matched in order; the first pattern that matches the whole metric name wins.
"""

from __future__ import annotations

import re

MIND_THE_GAP = "Liang et al. 2022, Mind the Gap (NeurIPS), Weixin-Liang/Modality-Gap"
TWO_EFFECTS = "Schrodi et al. 2025, Two Effects, One Trigger (ICLR), lmb-freiburg/two-effects-one-trigger gap_precompute.py"
NOT_A_GAP = "Fahim et al. 2024, It's Not a Modality Gap"
ALIGN_UNIFORM = "Wang & Isola 2020, Understanding Contrastive Representation Learning (ICML), SsnL/align_uniform lalign/lunif"
CROSS_THE_GAP = "Mistretta et al. 2025, Cross the Gap (ICLR), miccunifi/Cross-the-Gap src/retrieval.py compute_metrics"
EYES_WIDE_SHUT = "Tong et al. 2024, Eyes Wide Shut (CVPR), tsb0601/MMVP"
IMAGENET_C = "Hendrycks & Dietterich 2019, ImageNet-C (ICLR), hendrycks/robustness make_imagenet_c.py"
MCM = "Ming et al. 2022, MCM (NeurIPS), deeplearning-wisc/MCM utils/detection_util.py"
CKA = "Kornblith et al. 2019, Similarity of Neural Network Representations Revisited (ICML)"
MOD_X = "Ni et al. 2023, Continual Vision-Language Representation Learning with Off-Diagonal Information (Mod-X)"
CLIPSCOPE = "defined by clipscope"

SOURCES: list[tuple[str, str]] = [
    # gap
    (r"centroid_distance|paired_distance", f"{MIND_THE_GAP}; {TWO_EFFECTS} (L2M, L2I)"),
    (r"centroid_cosine", NOT_A_GAP),
    (r"paired_cosine", MIND_THE_GAP),
    (r"rmg", f"{TWO_EFFECTS} compute_rmg"),
    (r"cone_(image|text)", f"{MIND_THE_GAP} (cone effect)"),
    (r"linear_separability", NOT_A_GAP),
    # uniformity
    (r"uniformity_(image|text)|alignment", ALIGN_UNIFORM),
    (r"uniformity_union", f"{CLIPSCOPE} (Wang & Isola's uniformity over the union of both modalities)"),
    (r"uniformity_cross", NOT_A_GAP),
    (r"relative_alignment", "Oh et al. 2023, Geodesic Multi-Modal Mixup (NeurIPS)"),
    # invert
    (r"(initial|final)_cosine", f"{CROSS_THE_GAP} (OTI/OVI objective)"),
    (r"(image_to_image|text_to_text|oti_to_image|ovi_to_text)_(map|map_at_r|precision_at_r|recall_at_1)",
     f"{CROSS_THE_GAP}; Musgrave et al. 2020 (mAP@R)"),
    # blindpairs
    (r"n_blind_pairs|blind_pair_fraction|n_clip_similar_pairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)"),
    (r"images_in_blind_pair", f"{CLIPSCOPE} (share of images in a mined CLIP-blind pair)"),
    (r"pair_accuracy_.+", f"{EYES_WIDE_SHUT} (MMVP-VLM pair rule: both statements right)"),
    # robustness
    (r"accuracy_clean|mean_corruption_accuracy", f"{IMAGENET_C}; Radford et al. 2021 (zero-shot)"),
    (r"m?ce|relative_mce", f"{IMAGENET_C} (mean corruption error, AlexNet-normalised)"),
    (r"relative_drop", f"{CLIPSCOPE} ((clean - corrupted) / clean accuracy)"),
    (r"mean_drift", f"{CLIPSCOPE} (cosine between clean and corrupted embeddings)"),
    (r"ece", "Guo et al. 2017, On Calibration of Modern Neural Networks (ICML), 15 equal-width bins"),
    (r"nll", f"{CLIPSCOPE} (negative log-likelihood of the zero-shot softmax)"),
    (r"prompt_accuracy_(std|range)", f"{CLIPSCOPE} (spread of zero-shot accuracy over prompt templates)"),
    (r"ood_auroc", f"{MCM} get_measures (AUROC)"),
    (r"ood_fpr95", f"{MCM} fpr_and_fdr_at_recall"),
    # drift
    (r"cka_(image|text)", f"{CKA} (linear CKA)"),
    (r"procrustes_residual_(image|text)|aligned_angle_(image|text)", "Schönemann 1966, orthogonal Procrustes"),
    (r"rotation_angle_(image|text)|inter_modal_deviation|similarity_kl",
     f"{MOD_X}, as the paper describes it (see the description for how it is computed)"),
    (r"knn_overlap_(image|text)|raw_cosine_(image|text)", f"{CLIPSCOPE} (per-row agreement of the two releases)"),
    (r"(gap|paired_cosine)_(old|new|change)", MIND_THE_GAP),
    (r"compat_.+", "Shen et al. 2020, Towards Backward-Compatible Representation Learning (CVPR)"),
]
_COMPILED = [(re.compile(p), s) for p, s in SOURCES]


def source_of(name: str) -> str | None:
    """The source of metric ``name``, or None when none is registered."""
    for pattern, source in _COMPILED:
        if pattern.fullmatch(name):
            return source
    return None
