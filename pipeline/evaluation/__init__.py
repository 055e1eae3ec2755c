"""Evaluation on the standard NYUDv2 protocol: inference, the protocol loop, the baseline.

`pipeline.evaluation.evaluate.evaluate(params)` is the stage's entry; `predict_batch` is the one
inference path, shared with the `predict` CLI.
"""

from pipeline.evaluation.baseline import constant_baseline, train_depth_median
from pipeline.evaluation.depth_bins import BIN_COLUMNS, DepthBinAccumulator, depth_bin_edges
from pipeline.evaluation.inference import predict_batch, predict_depth, train_resolution
from pipeline.evaluation.protocol import EvalResult, evaluate_model, example_positions, protocol_gt

__all__ = [
    "BIN_COLUMNS",
    "DepthBinAccumulator",
    "EvalResult",
    "constant_baseline",
    "depth_bin_edges",
    "evaluate_model",
    "example_positions",
    "predict_batch",
    "predict_depth",
    "protocol_gt",
    "train_depth_median",
    "train_resolution",
]
