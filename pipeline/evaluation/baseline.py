"""The constant-depth baseline: every pixel of every test image at the training median depth.

It puts the model's numbers in context: a network that does not beat it has learnt
nothing about the scene beyond the dataset's typical distance.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from pipeline.data.datasets import iter_split
from pipeline.errors import PipelineError
from pipeline.metrics import eval_mask

log = logging.getLogger(__name__)

# The streamed median is read off a histogram of 1 mm bins centred on whole millimetres:
# exact for the split files' millimetre depths, within 0.5 mm for float depths.
MEDIAN_STEP_M = 1e-3


def train_depth_median(
    train_path: str | Path, min_depth: float, max_depth: float, step: float = MEDIAN_STEP_M, batch_size: int = 64
) -> float:
    """Median of the training split's (filled) depth over valid pixels, streamed.

    A histogram of `step`-wide bins is accumulated batch by batch, so memory holds one
    batch, never the whole split; the median is the centre of the bin that holds it
    (bins are centred on multiples of `step`, the millimetres the split files store).

    Args:
        train_path: the processed `train.h5`.
        min_depth: the valid range's lower end (as `eval_mask`, no crop), metres.
        max_depth: the valid range's upper end, metres.
        step: histogram bin width, metres.
        batch_size: images read at a time.

    Raises:
        PipelineError: if the split has no valid depth.
    """
    counts = np.zeros(math.ceil(max_depth / step) + 1, np.int64)
    for batch in iter_split(train_path, batch_size):
        d = batch.depth[eval_mask(batch.depth, min_depth, max_depth, "none")]  # (P,) valid metres
        counts += np.bincount(np.rint(d / step).astype(np.int64), minlength=len(counts))
    total = int(counts.sum())
    if total == 0:
        raise PipelineError(
            f"{train_path}: no depth inside ({min_depth}, {max_depth}) m; check eval.min_depth/max_depth "
            "or re-run `dvc repro preprocess`"
        )
    # The bins holding the two middle pixels (the same one for an odd count), averaged as
    # np.median does: bin k holds pixel rank r (0-based) if cumsum[k] is the first > r.
    cum = np.cumsum(counts)
    k = np.searchsorted(cum, [(total - 1) // 2 + 1, total // 2 + 1])  # (2,) bin indices
    return float(k.mean() * step)


def constant_baseline(processed_dir: str | Path, min_depth: float, max_depth: float) -> tuple[float, str]:
    """The baseline's depth, the median training depth, and a one-line description of its source.

    Returns:
        (depth in metres, clipped to [min_depth, max_depth]; where it came from).
    """
    train_h5 = Path(processed_dir) / "train.h5"
    depth = train_depth_median(train_h5, min_depth, max_depth)
    log.info("constant baseline: %.3f m, the median training depth", depth)
    # Named relative to the processed folder: metrics.json is the same wherever the repository lives.
    return float(np.clip(depth, min_depth, max_depth)), f"median of the training split's depth ({train_h5.name})"
