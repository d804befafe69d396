"""Robustness probes: image corruptions (ImageNet-C) and the metrics built on them."""

from clipscope.robustness.corruptions import CORRUPTIONS, PARAMS, corrupt, corrupt_batch

__all__ = ["CORRUPTIONS", "PARAMS", "corrupt", "corrupt_batch"]
