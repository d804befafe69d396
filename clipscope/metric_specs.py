"""One home per metric: the registry of metric specs that reports, ``compare``, the HTML report
and ``commands/*.md`` all read.

Each :class:`MetricSpec` names a metric (a pattern for families such as ``pair_accuracy_*``), the
command that reports it, where the number comes from (paper and reference function, or "defined
by clipscope"), its unit and its default ``compare`` tolerance. A report refuses a metric with no
spec, so no number leaves clipscope without saying where it comes from.

Adding a metric to an existing command takes two files: its function (in ``clipscope/analysis``)
and a spec here with ``compute=``: the command evaluates every spec it owns that has one (see
:func:`computed_metrics`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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
CORRUPTION_CELLS = ("corruptions", "severities", "jpeg_round_trip", "frost", "baseline")



@dataclass(frozen=True)
class MetricSpec:
    pattern: str  # the metric's name, or a regular expression for a family of names
    command: str
    source: str
    unit: str = ""  # "", "%", "degrees", "nats", "count"
    tolerance: float | None = None  # default compare tolerance (None: compare's general one)
    description: str = ""  # for computed metrics (the others describe themselves in the report)
    higher_is_better: bool | None = None
    compute: Callable | None = None  # for metrics computed from the command's inputs (see computed_metrics)
    # config keys that must be set (truthy) in a report for it to carry this metric: a report run
    # without them was not asked for it, so compare does not count it missing
    requires: tuple[str, ...] = ()
    # config keys whose values define what the metric measures: two reports that differ in one are
    # not comparable on it (besides the command's own, COMMAND_DEFINES)
    defined_by: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # inputs a compute function reads; without them the metric is skipped


# Config keys that define every metric of a command (compare refuses to gate across a change in one).
COMMAND_DEFINES = {
    "uniformity": ("t",),
    "invert": ("mode", "tokens", "steps", "lr", "weight_decay", "batch_size", "seed", "init_std", "template"),
    "blindpairs": ("benchmark", "clip_threshold", "ref_threshold", "reference"),
    "drift": ("k", "kl_temperature"),
    "compose": ("benchmarks",),
    "direction": ("a", "b", "text_a", "text_b"),
    "robustness": ("templates", "max_images"),
}


SPECS: list[MetricSpec] = [
    # gap
    MetricSpec(r"centroid_distance|paired_distance", "gap", f"{MIND_THE_GAP}; {TWO_EFFECTS} (L2M, L2I)"),
    MetricSpec(r"centroid_cosine", "gap", NOT_A_GAP),
    MetricSpec(r"paired_cosine", "gap", MIND_THE_GAP),
    MetricSpec(r"paired_angle", "gap", f"{CLIPSCOPE} (mean angle between each pair's image and text)", "degrees", 1.0),
    MetricSpec(r"rmg", "gap", f"{TWO_EFFECTS} compute_rmg"),
    MetricSpec(r"cone_(image|text)", "gap", f"{MIND_THE_GAP} (cone effect)"),
    MetricSpec(r"linear_separability", "gap", NOT_A_GAP),
    MetricSpec(r"subregion_(win_share|mean_gain)", "gap",
               "Qiu et al. 2024, MacCap (AAAI) (captions sit closer to image subregions than to whole images)",
               requires=("subregions",), defined_by=("subregion_max_images",)),
    MetricSpec(r"noise_(sigma|gaussian_share|mean_abs_skew|mean_excess_kurtosis)|noisy_(centroid_distance|paired_cosine|"
               r"linear_separability)", "gap",
               "Qiu et al. 2024, MacCap (AAAI) (paired differences as Gaussian noise); Nukrai et al. 2022, CapDec "
               "(EMNLP Findings) (noise injection); D'Agostino & Pearson 1973 (scipy.stats.normaltest)",
               requires=("noise_model",), defined_by=("noise_alpha", "noise_max_pairs")),
    # uniformity
    MetricSpec(r"uniformity_(image|text)|alignment", "uniformity", ALIGN_UNIFORM),
    MetricSpec(r"uniformity_union", "uniformity",
               f"{CLIPSCOPE} (Wang & Isola's uniformity over the union of both modalities)"),
    MetricSpec(r"uniformity_cross", "uniformity", NOT_A_GAP),
    MetricSpec(r"relative_alignment", "uniformity", "Oh et al. 2023, Geodesic Multi-Modal Mixup (NeurIPS)"),
    # invert
    MetricSpec(r"(initial|final)_cosine", "invert", f"{CROSS_THE_GAP} (OTI/OVI objective)"),
    MetricSpec(r"(image_to_image|text_to_text|oti_to_image|ovi_to_text)_(map|map_at_r|precision_at_r|recall_at_1)",
               "invert", f"{CROSS_THE_GAP}; Musgrave et al. 2020 (mAP@R)", "%", 2.0),
    # blindpairs
    MetricSpec(r"n_blind_pairs|n_clip_similar_pairs", "blindpairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)",
               "count", 0.0),
    MetricSpec(r"blind_pair_fraction", "blindpairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)"),
    MetricSpec(r"images_in_blind_pair", "blindpairs", f"{CLIPSCOPE} (share of images in a mined CLIP-blind pair)"),
    MetricSpec(r"pair_accuracy_.+", "blindpairs", f"{EYES_WIDE_SHUT} (MMVP-VLM pair rule: both statements right)",
               "%", 2.0),
    # robustness
    MetricSpec(r"accuracy_clean", "robustness", f"{IMAGENET_C}; Radford et al. 2021 (zero-shot)", requires=("corruptions",)),
    MetricSpec(r"mean_corruption_accuracy", "robustness", f"{IMAGENET_C}; Radford et al. 2021 (zero-shot)",
               requires=("corruptions",), defined_by=CORRUPTION_CELLS),
    MetricSpec(r"mce|relative_mce", "robustness", f"{IMAGENET_C} (mean corruption error, AlexNet-normalised)", "%", 2.0,
               requires=("corruptions",), defined_by=CORRUPTION_CELLS),
    MetricSpec(r"relative_drop", "robustness", f"{CLIPSCOPE} ((clean - corrupted) / clean accuracy)",
               requires=("corruptions",), defined_by=CORRUPTION_CELLS),
    MetricSpec(r"mean_drift", "robustness", f"{CLIPSCOPE} (cosine between clean and corrupted embeddings)",
               requires=("corruptions",), defined_by=CORRUPTION_CELLS),
    MetricSpec(r"ece", "robustness", "Guo et al. 2017, On Calibration of Modern Neural Networks (ICML), 15 equal-width bins",
               requires=("corruptions",)),
    MetricSpec(r"nll", "robustness", f"{CLIPSCOPE} (negative log-likelihood of the zero-shot softmax)", "nats", 0.05,
               requires=("corruptions",)),
    MetricSpec(r"prompt_accuracy_(std|range)", "robustness",
               f"{CLIPSCOPE} (spread of zero-shot accuracy over prompt templates)", requires=("corruptions",)),
    MetricSpec(r"accuracy_imagenet(_v2|_sketch|_r|_a)?|mean_shift_accuracy|(mean_)?shift_drop(_imagenet_(v2|sketch|r|a))?",
               "robustness", "Radford et al. 2021 (zero-shot, 80 templates); CLIP_benchmark zeroshot_classification; "
                             "Recht et al. 2019 (V2), Wang et al. 2019 (Sketch), Hendrycks et al. 2021 (R, A: logits "
                             "restricted to their 200 classes)", requires=("benchmarks",), defined_by=("benchmarks",)),
    MetricSpec(r"imagenet_c_mean_accuracy", "robustness", f"{IMAGENET_C} (the published images on disk)",
               requires=("benchmarks",), defined_by=("benchmarks",)),
    MetricSpec(r"imagenet_c_(relative_)?mce", "robustness",
               f"{IMAGENET_C} (the published images; AlexNet-normalised)", "%", 2.0, requires=("benchmarks",),
               defined_by=("benchmarks",)),
    MetricSpec(r"ood_auroc", "robustness", f"{MCM} get_measures (AUROC)", requires=("ood_data",), defined_by=("ood_data",)),
    MetricSpec(r"ood_fpr95", "robustness", f"{MCM} fpr_and_fdr_at_recall", requires=("ood_data",),
               defined_by=("ood_data",)),
    # drift
    MetricSpec(r"cka_(image|text)", "drift", f"{CKA} (linear CKA)"),
    MetricSpec(r"procrustes_residual_(image|text)", "drift", "Schönemann 1966, orthogonal Procrustes"),
    MetricSpec(r"aligned_angle_(image|text)", "drift", "Schönemann 1966, orthogonal Procrustes", "degrees", 1.0),
    MetricSpec(r"rotation_angle_(image|text)|inter_modal_deviation", "drift",
               f"{MOD_X}, as the paper describes it (see the description for how it is computed)", "degrees", 1.0),
    MetricSpec(r"similarity_kl", "drift",
               f"{MOD_X}, as the paper describes it (see the description for how it is computed)", "nats"),
    MetricSpec(r"knn_overlap_(image|text)|raw_cosine_(image|text)", "drift",
               f"{CLIPSCOPE} (per-row agreement of the two releases)"),
    MetricSpec(r"(gap|paired_cosine)_(old|new|change)", "drift", MIND_THE_GAP),
    MetricSpec(r"direction_text_cosine_(image|text)", "direction",
               "RAVE (CLIP-guided image enhancement), MACderRu/RAVE train_rave.py: the residual direction between "
               "two groups' normalised mean embeddings", requires=("text_a",)),
    MetricSpec(r"direction_auroc_(image|text)", "direction",
               "RAVE (CLIP-guided image enhancement), MACderRu/RAVE train_rave.py: the residual direction between "
               "two groups' normalised mean embeddings"),
    MetricSpec(r"direction_angle_(image|text)", "direction",
               f"{CLIPSCOPE} (the angle between the two normalised group means whose difference is RAVE's direction)",
               "degrees", 1.0),
    MetricSpec(r"direction_mean_distance_(image|text)", "direction",
               f"{CLIPSCOPE} (raw centroid distance; interval: bias-corrected U-statistic, Hoeffding variance)"),
    MetricSpec(r"mmvp_pair_accuracy_mean", "compose", f"{EYES_WIDE_SHUT} (MMVP-VLM pair rule: both statements right)", "%"),
    MetricSpec(r"sugarcrepe_.+", "compose", "Hsieh et al. 2023, SugarCrepe (NeurIPS D&B); RAIVNLab/sugar-crepe main_eval.py"),
    MetricSpec(r"aro_(relation|attribution)|aro_order_.+", "compose",
               "Yuksekgonul et al. 2023, When and Why Vision-Language Models Behave like Bags-of-Words (ICLR); "
               "mertyg/vision-language-models-are-bows aro_datasets.py"),
    MetricSpec(r"winoground_(text|image|group)", "compose", "Thrush et al. 2022, Winoground (CVPR)"),
    MetricSpec(r"probe_(binding|spatial|counting|word_order)", "compose",
               f"{CLIPSCOPE} (procedural two-object probes; hard negatives as in SugarCrepe and ARO)"),
    MetricSpec(r"text_negative_collapse|text_order_cosine", "compose",
               f"{CLIPSCOPE} (text-side diagnostics; word order perturbed with ARO's shuffle_trigrams)"),
    MetricSpec(r"compat_.+", "drift", "Shen et al. 2020, Towards Backward-Compatible Representation Learning (CVPR)"),
]
_COMPILED = [(re.compile(spec.pattern), spec) for spec in SPECS]


def spec_of(name: str) -> MetricSpec | None:
    """The spec of metric ``name`` (first full match), or None when none is registered."""
    for pattern, spec in _COMPILED:
        if pattern.fullmatch(name):
            return spec
    return None


def specs_for(command: str) -> list[MetricSpec]:
    return [s for s in SPECS if s.command == command]


def computed_metrics(command: str, inputs: dict) -> dict:
    """Every metric of ``command`` whose spec has a ``compute`` function, evaluated on the
    command's inputs (its task's ``TaskResult.inputs``; gap: I, T, pairs, units). A spec whose
    ``needs`` are not all among the inputs (e.g. pairs on unpaired data) is skipped; an error
    inside a compute function is an error of the run, never a silently missing metric."""
    from clipscope.analysis import metric

    out = {}
    for spec in specs_for(command):
        if spec.compute is None or any(inputs.get(k) is None for k in spec.needs):
            continue
        value = spec.compute(inputs)
        ci = None
        if isinstance(value, tuple):
            value, ci = value
        out[spec.pattern] = metric(value, higher_is_better=spec.higher_is_better, description=spec.description,
                                   ci95=ci)
    return out
