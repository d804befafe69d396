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
    description: str = ""  # what it measures; {name} fields are the pattern's named groups
    higher_is_better: bool | None | str = "unset"  # True, False, or None (no direction); every spec sets it
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


M = "(?P<m>image|text)"  # a modality, named in the description as {m}
D, L, N = True, False, None  # the directions: higher is better, lower is better, no direction


def _spec(pattern, command, source, description, higher_is_better, unit="", tolerance=None, **kw) -> MetricSpec:
    return MetricSpec(pattern, command, source, unit, tolerance, description, higher_is_better, **kw)


NOISE = ("Qiu et al. 2024, MacCap (AAAI) (paired differences as Gaussian noise); Nukrai et al. 2022, CapDec "
         "(EMNLP Findings) (noise injection); D'Agostino & Pearson 1973 (scipy.stats.normaltest)")
NOISE_KW = dict(requires=("noise_model",), defined_by=("noise_alpha", "noise_max_pairs"))
RAVE = ("RAVE (CLIP-guided image enhancement), MACderRu/RAVE train_rave.py: the residual direction between two "
        "groups' normalised mean embeddings")
ARO = ("Yuksekgonul et al. 2023, When and Why Vision-Language Models Behave like Bags-of-Words (ICLR); "
       "mertyg/vision-language-models-are-bows aro_datasets.py")
SUGARCREPE = "Hsieh et al. 2023, SugarCrepe (NeurIPS D&B); RAIVNLab/sugar-crepe main_eval.py"
PUBLISHED = ("Radford et al. 2021 (zero-shot); CLIP_benchmark zeroshot_classification; Recht et al. 2019 (V2), Wang "
             "et al. 2019 (Sketch), Hendrycks et al. 2021 (R, A: logits restricted to their 200 classes)")
PUBLISHED_KW = dict(requires=("benchmarks",), defined_by=("benchmarks",))
CORRUPTED_KW = dict(requires=("corruptions",), defined_by=CORRUPTION_CELLS)

SPECS: list[MetricSpec] = [
    # gap
    _spec(r"centroid_distance", "gap", f"{MIND_THE_GAP}; {TWO_EFFECTS} (L2M)",
          "||mu_I - mu_T||: the modality gap. value and ci95: the bias-corrected estimate (an unbiased U-statistic "
          "over sampling units for the square); plug_in: ||mean(I) - mean(T)|| as the references compute it, biased "
          "upward by about tr Cov / (2 n gap)", L),
    _spec(r"centroid_cosine", "gap", NOT_A_GAP,
          "cosine between the image and text centroids (value and ci95: from bias-corrected U-statistics of the "
          "centroids' products; plug_in: the cosine of the sample means)", N),
    _spec(r"paired_distance", "gap", f"{MIND_THE_GAP}; {TWO_EFFECTS} (L2I)", "mean_i ||I_i - T_i|| over pairs (L2I)", L),
    _spec(r"paired_cosine", "gap", MIND_THE_GAP, "mean_i <I_i, T_i> over pairs", D),
    _spec(r"paired_angle", "gap", f"{CLIPSCOPE} (mean angle between each pair's image and text)",
          "mean over pairs of arccos <I_i, T_i>, in degrees", L, "degrees", 1.0),
    _spec(r"rmg", "gap", f"{TWO_EFFECTS} compute_rmg", "relative modality gap (Schrodi et al. 2025)", L),
    _spec(rf"cone_{M}", "gap", f"{MIND_THE_GAP} (cone effect)",
          "mean cosine between {m} rows of different sampling units (cone effect; two captions of one image are not "
          "a pair of independent rows)", L),
    _spec(r"linear_separability", "gap", NOT_A_GAP, "test accuracy of a logistic regression telling image from text "
                                                    "rows", L),
    _spec(r"subregion_win_share", "gap",
          "Qiu et al. 2024, MacCap (AAAI) (captions sit closer to image subregions than to whole images)",
          "share of pairs whose caption is closer to one of its image's crops than to the whole image", N,
          requires=("subregions",), defined_by=("subregion_max_images",)),
    _spec(r"subregion_mean_gain", "gap",
          "Qiu et al. 2024, MacCap (AAAI) (captions sit closer to image subregions than to whole images)",
          "mean over pairs of (best crop cosine - whole-image cosine) with the caption", N,
          requires=("subregions",), defined_by=("subregion_max_images",)),
    _spec(r"noise_sigma", "gap", NOISE, "isotropic scale sigma of the paired differences x - t - g (g: the centroid "
                                        "gap): sigma^2 = mean over dimensions of their variance", N, **NOISE_KW),
    _spec(r"noise_variance", "gap", NOISE, "sigma^2, the isotropic variance of the paired differences: MacCap's noise "
                                           "is N(0, sigma^2) with this variance", N, **NOISE_KW),
    _spec(r"noise_gaussian_share", "gap", NOISE, "share of dimensions whose paired differences pass D'Agostino-Pearson's "
                                                 "normality test (scipy.stats.normaltest)", N, **NOISE_KW),
    _spec(r"noise_mean_abs_skew", "gap", NOISE, "mean |skewness| of the paired differences over dimensions (0 for a "
                                                "Gaussian)", N, **NOISE_KW),
    _spec(r"noise_mean_excess_kurtosis", "gap", NOISE, "mean excess kurtosis of the paired differences over "
                                                       "dimensions (0 for a Gaussian, 3 for a Laplace)", N, **NOISE_KW),
    _spec(r"noisy_(?P<what>centroid_distance|paired_cosine|linear_separability)(?P<at>|_maccap)", "gap", NOISE,
          "{what} between the images and their paired text rows plus Gaussian noise (renormalised)", N, **NOISE_KW),
    # uniformity
    _spec(rf"uniformity_{M}", "uniformity", ALIGN_UNIFORM,
          "log mean exp(-2||x_i - x_j||^2) over pairs of {m} rows of different sampling units", L),
    _spec(r"alignment", "uniformity", ALIGN_UNIFORM, "mean_i ||I_i - T_i||^2 over pairs", L),
    _spec(r"uniformity_union", "uniformity", f"{CLIPSCOPE} (Wang & Isola's uniformity over the union of both modalities)",
          "uniformity over image and text rows together (pairs of rows of different sampling units)", L),
    _spec(r"uniformity_cross", "uniformity", NOT_A_GAP,
          "log mean exp(-2||T_a - I_b||^2) over every text a and image b not paired in /pairs", L),
    _spec(r"relative_alignment", "uniformity", "Oh et al. 2023, Geodesic Multi-Modal Mixup (NeurIPS)",
          "mean over pairs (i, t) of ||t - I_i||^2 - min_{{j not paired with t}} ||t - I_j||^2", L),
    # invert
    _spec(r"(?P<when>initial|final)_cosine", "invert", f"{CROSS_THE_GAP} (OTI/OVI objective)",
          "mean cosine between the inverted feature and its target", D),
    _spec(r"(?P<how>image_to_image|text_to_text|oti_to_image|ovi_to_text)_(?P<score>map|map_at_r|precision_at_r|"
          r"recall_at_1)", "invert", f"{CROSS_THE_GAP}; Musgrave et al. 2020 (mAP@R)",
          "{score} (%) of {how} retrieval by label", D, "%", 2.0),
    # blindpairs
    _spec(r"n_blind_pairs", "blindpairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)",
          "pairs of images above the CLIP threshold and below the reference threshold", L, "count", 0.0),
    _spec(r"n_clip_similar_pairs", "blindpairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)",
          "pairs of images above the CLIP threshold", N, "count", 0.0),
    _spec(r"search_recall", "blindpairs", f"{CLIPSCOPE} (the indexed search checked against exact on sampled queries)",
          "share of the exact pairs above the CLIP threshold, for a seeded sample of query images, that the indexed "
          "search found (with --search index)", D, requires=("index",)),
    _spec(r"blind_pair_fraction", "blindpairs", f"{EYES_WIDE_SHUT} (CLIP-blind pair mining)",
          "CLIP-blind pairs as a share of all image pairs", L),
    _spec(r"images_in_blind_pair", "blindpairs", f"{CLIPSCOPE} (share of images in a mined CLIP-blind pair)",
          "share of images in at least one CLIP-blind pair", L),
    _spec(r"pair_accuracy_(?P<pattern>.+)", "blindpairs", f"{EYES_WIDE_SHUT} (MMVP-VLM pair rule: both statements right)",
          "pair accuracy (%): both statements of a pair matched to the right image ({pattern})", D, "%", 2.0),
    # robustness
    _spec(r"accuracy_clean", "robustness", f"{IMAGENET_C}; Radford et al. 2021 (zero-shot)",
          "zero-shot top-1 accuracy on the clean images as the corruptions see them (ImageNet-C protocol: resized to "
          "256, centre-cropped to 224, then the model's preprocessing): the reference for the corruption cells, not "
          "comparable with published or CLIP_benchmark accuracies", D, requires=("corruptions",)),
    _spec(r"accuracy_zero_shot", "robustness", "Radford et al. 2021 (zero-shot); CLIP_benchmark zeroshot_classification",
          "zero-shot top-1 accuracy on the original images through the model's own preprocessing alone: the number "
          "CLIP_benchmark and published tables compute", D, requires=("corruptions",)),
    _spec(r"mean_corruption_accuracy", "robustness", f"{IMAGENET_C}; Radford et al. 2021 (zero-shot)",
          "mean zero-shot top-1 accuracy over the corruption cells", D, **CORRUPTED_KW),
    _spec(r"mce", "robustness", f"{IMAGENET_C} (mean corruption error, AlexNet-normalised)",
          "mean corruption error (%): per corruption, the mean error over its severities / the baseline's, averaged",
          L, "%", 2.0, **CORRUPTED_KW),
    _spec(r"relative_mce", "robustness", f"{IMAGENET_C} (mean corruption error, AlexNet-normalised)",
          "relative mCE (%): errors minus the clean error, normalised by the baseline's the same way", L, "%", 2.0,
          **CORRUPTED_KW),
    _spec(r"relative_drop", "robustness", f"{CLIPSCOPE} ((clean - corrupted) / clean accuracy)",
          "(clean - mean corrupted accuracy) / clean accuracy", L, **CORRUPTED_KW),
    _spec(r"mean_drift", "robustness", f"{CLIPSCOPE} (cosine between clean and corrupted embeddings)",
          "mean cosine between an image's clean and corrupted embeddings", D, **CORRUPTED_KW),
    _spec(r"ece", "robustness", "Guo et al. 2017, On Calibration of Modern Neural Networks (ICML), 15 equal-width bins",
          "expected calibration error, 15 equal-width bins, clean images", L, requires=("corruptions",)),
    _spec(r"nll", "robustness", f"{CLIPSCOPE} (negative log-likelihood of the zero-shot softmax)",
          "negative log-likelihood with the model's logit scale, clean images", L, "nats", 0.05,
          requires=("corruptions",)),
    _spec(r"prompt_accuracy_(?P<what>std|range)", "robustness",
          f"{CLIPSCOPE} (spread of zero-shot accuracy over prompt templates)",
          "{what} of the clean accuracy across templates", L, requires=("corruptions",)),
    _spec(r"accuracy_(?P<set>imagenet(_v2|_sketch|_r|_a)?)", "robustness", PUBLISHED,
          "zero-shot top-1 accuracy on {set}", D, **PUBLISHED_KW),
    _spec(r"mean_shift_accuracy", "robustness", PUBLISHED, "mean zero-shot accuracy over the natural shifts on disk",
          D, **PUBLISHED_KW),
    _spec(r"(mean_)?shift_drop(_imagenet_(v2|sketch|r|a))?", "robustness", PUBLISHED,
          "ImageNet val accuracy minus the accuracy on the shifted set", L, **PUBLISHED_KW),
    _spec(r"imagenet_c_mean_accuracy", "robustness", f"{IMAGENET_C} (the published images on disk)",
          "mean zero-shot accuracy over the ImageNet-C cells on disk", D, **PUBLISHED_KW),
    _spec(r"imagenet_c_mce", "robustness", f"{IMAGENET_C} (the published images; AlexNet-normalised)",
          "mCE (%) of the published ImageNet-C images: per corruption, the mean error over severities 1-5 / "
          "AlexNet's, averaged", L, "%", 2.0, **PUBLISHED_KW),
    _spec(r"imagenet_c_relative_mce", "robustness", f"{IMAGENET_C} (the published images; AlexNet-normalised)",
          "relative mCE (%): errors minus the clean ImageNet val error, normalised by AlexNet's the same way", L, "%",
          2.0, **PUBLISHED_KW),
    _spec(r"ood_auroc", "robustness", f"{MCM} get_measures (AUROC)",
          "AUROC of the MCM score (T = 1), in-distribution positive", D, requires=("ood_data",),
          defined_by=("ood_data",)),
    _spec(r"ood_fpr95", "robustness", f"{MCM} fpr_and_fdr_at_recall",
          "false-positive rate on OOD data at 95% in-distribution TPR (MCM)", L, requires=("ood_data",),
          defined_by=("ood_data",)),
    # drift
    _spec(rf"cka_{M}", "drift", f"{CKA} (linear CKA)",
          "linear CKA between old and new {m} rows (1: same up to rotation and scale)", D),
    _spec(rf"procrustes_residual_{M}", "drift", "Schönemann 1966, orthogonal Procrustes",
          "||old R - new||^2 / ||new||^2 after orthogonal Procrustes ({m})", L),
    _spec(rf"aligned_angle_{M}", "drift", "Schönemann 1966, orthogonal Procrustes",
          "mean angle (degrees) between old and new {m} rows after alignment", L, "degrees", 1.0),
    _spec(rf"rotation_angle_{M}", "drift", f"{MOD_X}, as the paper describes it (see the description for how it is "
                                           "computed)",
          "Mod-X rotation, as the paper describes it: mean angle (degrees) between each {m} row's old and new "
          "embedding, unaligned", L, "degrees", 1.0),
    _spec(r"inter_modal_deviation", "drift", f"{MOD_X}, as the paper describes it (see the description for how it is "
                                             "computed)",
          "Mod-X inter-modal deviation, as the paper describes it: mean over pairs of |rotation angle of the image - "
          "rotation angle of its text| (degrees)", L, "degrees", 1.0),
    _spec(r"similarity_kl", "drift", f"{MOD_X}, as the paper describes it (see the description for how it is computed)",
          "Mod-X's distillation target, as the paper describes it: mean KL(old || new) of the rows softmax(<I_i, T_j> / "
          "temperature) of the in-batch image-text similarity matrix (nats)", L, "nats"),
    _spec(rf"knn_overlap_{M}", "drift", f"{CLIPSCOPE} (per-row agreement of the two releases)",
          "mean Jaccard overlap of each {m} row's k nearest neighbours, old vs new", D),
    _spec(rf"knn_search_recall_{M}", "drift", f"{CLIPSCOPE} (the indexed search checked against exact on sampled "
          "queries)", "share of the exact k nearest neighbours of sampled {m} query rows, in both releases, that the "
          "indexed search found (with --search index)", D, requires=("index",)),
    _spec(rf"raw_cosine_{M}", "drift", f"{CLIPSCOPE} (per-row agreement of the two releases)",
          "mean cosine between old and new {m} rows, unaligned", D),
    _spec(r"gap_(?P<rel>old|new)", "drift", MIND_THE_GAP, "modality gap (centroid distance) of the {rel} model", L),
    _spec(r"paired_cosine_(?P<rel>old|new)", "drift", MIND_THE_GAP, "mean paired image-text cosine of the {rel} model",
          D),
    _spec(r"gap_change", "drift", MIND_THE_GAP, "new minus old modality gap", N),
    _spec(r"paired_cosine_change", "drift", MIND_THE_GAP, "new minus old paired cosine", D),
    _spec(r"compat_new_text_old_image_recall@(?P<k>\d+)", "drift",
          "Shen et al. 2020, Towards Backward-Compatible Representation Learning (CVPR)",
          "new-model text queries against the old image gallery, recall@{k}", D),
    _spec(r"compat_old_text_new_image_recall@(?P<k>\d+)", "drift",
          "Shen et al. 2020, Towards Backward-Compatible Representation Learning (CVPR)",
          "old-model text queries against the new image gallery, recall@{k}", D),
    # direction
    _spec(rf"direction_text_cosine_{M}", "direction", RAVE,
          "cosine between the {m} direction and the text direction made the same way from the --text-a and --text-b "
          "prompt sets", D, requires=("text_a",)),
    _spec(rf"direction_auroc_{M}", "direction", RAVE,
          "AUROC of the projection onto the {m} direction, group A positive, on the rows that made it (in sample: an "
          "upper bound on held-out separation)", D),
    _spec(rf"direction_angle_{M}", "direction",
          f"{CLIPSCOPE} (the angle between the two normalised group means whose difference is RAVE's direction)",
          "angle (degrees) between the two groups' normalised mean {m} embeddings: how far apart the groups point; "
          "the direction is their normalised difference", N, "degrees", 1.0),
    _spec(rf"direction_mean_distance_{M}", "direction",
          f"{CLIPSCOPE} (raw centroid distance; interval: bias-corrected U-statistic, Hoeffding variance)",
          "||mean(A) - mean(B)|| of the raw {m} centroids, which also grows with a group's spread; value and ci95: "
          "bias-corrected; plug_in: the distance of the sample means", N),
    # compose
    _spec(r"mmvp_pair_accuracy_mean", "compose", f"{EYES_WIDE_SHUT} (MMVP-VLM pair rule: both statements right)",
          "MMVP-VLM: mean over patterns of the share of pairs with both statements right (%; chance 25), as "
          "clipscope blindpairs --benchmark mmvp scores it", D, "%"),
    _spec(r"sugarcrepe_(?P<family>replace|swap|add)", "compose", SUGARCREPE,
          "SugarCrepe {family}: accuracy pooled over the cases of its subsets, as the paper's family columns (chance "
          "0.5)", D),
    _spec(r"sugarcrepe_(?P<subset>.+)", "compose", SUGARCREPE,
          "SugarCrepe {subset}: the positive caption scores above the negative (a tie is wrong; chance 0.5)", D),
    _spec(r"aro_(?P<which>relation|attribution)", "compose", ARO,
          "ARO VG-{which}: macro accuracy over its groups; the true caption must win the argmax (a tie is wrong; "
          "chance 0.5)", D),
    _spec(r"aro_order_(?P<file>.+)", "compose", ARO,
          "ARO order ({file}): the caption scores highest against its four perturbations (np.argmax; a tie is "
          "correct)", D),
    _spec(r"winoground_(?P<score>text|image|group)", "compose", "Thrush et al. 2022, Winoground (CVPR)",
          "Winoground {score} score (strict >)", D),
    _spec(r"probe_(?P<kind>binding|spatial|counting|word_order)", "compose",
          f"{CLIPSCOPE} (procedural two-object probes; hard negatives as in SugarCrepe and ARO)",
          "offline probes, {kind}: the right caption scores above one with the same words recombined (a tie is "
          "wrong; chance 0.5)", D),
    _spec(r"text_negative_collapse", "compose",
          f"{CLIPSCOPE} (text-side diagnostics; word order perturbed with ARO's shuffle_trigrams)",
          "share of (caption, hard negative) pairs whose text embeddings have cosine > 0.99: the text encoder cannot "
          "tell them apart whatever the image", L),
    _spec(r"text_order_cosine", "compose",
          f"{CLIPSCOPE} (text-side diagnostics; word order perturbed with ARO's shuffle_trigrams)",
          "mean cosine of a caption with its trigram-shuffled self (1: the text encoder ignores word order)", L),
]
_COMPILED = [(re.compile(spec.pattern), spec) for spec in SPECS]


def display(spec: MetricSpec) -> str:
    """The spec's pattern as people read it (named groups shown as plain groups)."""
    return re.sub(r"\(\?P<\w+>", "(", spec.pattern)


def spec_of(name: str) -> MetricSpec | None:
    """The spec of metric ``name`` (first full match), or None when none is registered."""
    found = match_of(name)
    return None if found is None else found[0]


def match_of(name: str):
    """``(spec, its match of name)`` or None."""
    for pattern, spec in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            return spec, m
    return None


def describe(name: str, detail: str | None = None) -> tuple[str, bool | None]:
    """A metric's description (its spec's, the named groups filled in, and the run's ``detail``)
    and direction."""
    found = match_of(name)
    if found is None:
        return detail or "", None
    spec, m = found
    groups = {k: (v or "").replace("_", " ") for k, v in m.groupdict().items()}
    text = spec.description.format(**groups)
    return (f"{text}; {detail}" if detail else text), spec.higher_is_better


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
        out[spec.pattern] = metric(value, ci95=ci)
    return out
