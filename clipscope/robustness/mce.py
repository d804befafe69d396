"""Corruption error (CE) and its mean over corruptions (mCE), Hendrycks & Dietterich 2019.

For a model f and a baseline b, with E the top-1 error::

    CE_c          = sum_s E^f_{s,c} / sum_s E^b_{s,c}
    relative CE_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^b_{s,c} - E^b_clean)
    mCE           = mean_c CE_c (in percent; the baseline itself scores 100)

The baseline is another robustness report (the same corruption and severity cells), or, on the
1,000-class ImageNet validation set with all five severities, AlexNet's published errors.
"""

from __future__ import annotations

import numpy as np

# AlexNet's top-1 error on ImageNet-C per corruption, averaged over severities 1-5 (Hendrycks &
# Dietterich 2019; the values hendrycks/robustness publishes, as AugMix's ALEXNET_ERR lists them).
ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
# AlexNet's clean top-1 error (Hendrycks & Dietterich 2019, Table 1: 43.5%).
ALEXNET_CLEAN_ERROR = 0.435


def is_imagenet_val(source) -> bool:
    """The data is the 1,000-class ImageNet validation set: its class folders are the 1,000
    WordNet ids (n01440764 ...), named by ImageNet's class names."""
    return getattr(source, "class_naming", None) == "imagenet" and len(source.classnames or []) == 1000


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den != 0 else float("nan")


def corruption_errors(table: list[dict], clean_accuracy: float, *, baseline_table: list[dict] | None = None,
                      baseline_clean_accuracy: float | None = None, alexnet: bool = False) -> tuple[list[dict], float, float]:
    """Per-corruption CE and relative CE (percent), and mCE and relative mCE.

    ``table``: rows {corruption, severity, accuracy}. With ``baseline_table`` the cells both
    reports hold are compared; with ``alexnet`` a corruption counts only when all five
    severities were run (AlexNet's errors are means over 1-5). Corruptions without a baseline
    are left out; returns NaN means when none remains. A baseline whose errors (or whose
    degradation, for the relative CE) sum to zero leaves that ratio undefined: NaN, not inf.
    """
    err = {(r["corruption"], r["severity"]): 1.0 - r["accuracy"] for r in table}
    e_clean = 1.0 - clean_accuracy
    rows = []
    for c in dict.fromkeys(r["corruption"] for r in table):
        sevs = sorted(s for (cc, s) in err if cc == c)
        e = np.array([err[(c, s)] for s in sevs])
        if baseline_table is not None:
            base = {(r["corruption"], r["severity"]): 1.0 - r["accuracy"] for r in baseline_table}
            common = [k for k, s in enumerate(sevs) if (c, s) in base]
            if not common:
                continue
            b = np.array([base[(c, sevs[k])] for k in common])
            e = e[common]
            b_clean = 1.0 - baseline_clean_accuracy
            ce, rel = _ratio(e.sum(), b.sum()), _ratio((e - e_clean).sum(), (b - b_clean).sum())
        elif alexnet and c in ALEXNET_ERRORS and sevs == [1, 2, 3, 4, 5]:
            ce = e.mean() / ALEXNET_ERRORS[c]
            rel = (e.mean() - e_clean) / (ALEXNET_ERRORS[c] - ALEXNET_CLEAN_ERROR)
        else:
            continue
        rows.append({"corruption": c, "ce": 100.0 * float(ce), "relative_ce": 100.0 * float(rel)})
    if not rows:
        return rows, float("nan"), float("nan")
    return rows, float(np.mean([r["ce"] for r in rows])), float(np.mean([r["relative_ce"] for r in rows]))
