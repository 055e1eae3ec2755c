"""Camera motion between two frames by direct alignment of features on SE(3).

`extract` builds a feature `Pyramid` (the depth network's encoder features, or image
intensities); `align` estimates `T_j_from_i` for batches of (target i, source j) pairs
from the target's depth. See docs/pose.md.
"""

from pipeline.pose.features import FEATURE_KINDS, Pyramid, extract, extract_with_depth, untrained_copy
from pipeline.pose.solver import STATUS, AlignOptions, AlignResult, align

__all__ = [
    "FEATURE_KINDS",
    "STATUS",
    "AlignOptions",
    "AlignResult",
    "Pyramid",
    "align",
    "extract",
    "extract_with_depth",
    "untrained_copy",
]
