"""Error as a function of ground-truth depth: pixel-pooled metrics per 0.5 m bin, streamed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import per_image_metrics_torch

BIN_WIDTH_M = 0.5  # error_by_depth.csv: ground-truth depth bins of 0.5 m
BIN_COLUMNS = ("depth_bin_lo", "depth_bin_hi", "n_pixels", "abs_rel", "rmse", "delta1")


def depth_bin_edges(max_depth: float, width: float = BIN_WIDTH_M) -> np.ndarray:
    """0, 0.5, 1.0, ... up to max_depth (the last bin is shorter if max_depth is not a multiple)."""
    lows = np.arange(math.ceil(max_depth / width - 1e-9)) * width
    return np.append(lows, max_depth)


class DepthBinAccumulator:
    """Pixel-pooled abs_rel, rmse and delta1 per ground-truth depth bin, summed over batches.

    Each bin's pixels go through `per_image_metrics_torch` as one "image"; its means times
    the pixel count give the sums (rmse via its square), so no metric is re-implemented.
    """

    def __init__(self, max_depth: float) -> None:
        self.edges = depth_bin_edges(max_depth)
        nb = len(self.edges) - 1
        self.n = np.zeros(nb, np.int64)
        self.sums = {"abs_rel": np.zeros(nb), "sq_err": np.zeros(nb), "delta1": np.zeros(nb)}

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> None:
        """Adds a batch: pred, gt (B, H, W) metres (pred clipped), mask (B, H, W) bool from `eval_mask`."""
        bins = np.digitize(gt[mask], self.edges[1:-1]).astype(np.int16)  # (P,) bin of each valid pixel
        order = np.argsort(bins, kind="stable")  # radix sort on int16: groups the pixels by bin, O(P)
        counts = np.bincount(bins, minlength=len(self.n))  # (nb,)
        cuts = np.cumsum(counts)[:-1]
        p = np.split(pred[mask][order].astype(np.float64), cuts)  # nb arrays of the bins' pixels
        g = np.split(gt[mask][order].astype(np.float64), cuts)
        for b in np.flatnonzero(counts):
            pb, gb = torch.from_numpy(p[b])[None], torch.from_numpy(g[b])[None]  # (1, Pb): the bin as one image
            m = per_image_metrics_torch(pb, gb, torch.ones_like(pb, dtype=torch.bool))
            self.n[b] += counts[b]
            self.sums["abs_rel"][b] += counts[b] * float(m["abs_rel"][0])
            self.sums["sq_err"][b] += counts[b] * float(m["rmse"][0]) ** 2
            self.sums["delta1"][b] += counts[b] * float(m["delta1"][0])

    def to_frame(self) -> pd.DataFrame:
        """depth_bin_lo, depth_bin_hi, n_pixels, abs_rel, rmse, delta1 (NaN for empty bins)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = {k: v / self.n for k, v in self.sums.items()}
        return pd.DataFrame(
            {
                "depth_bin_lo": self.edges[:-1],
                "depth_bin_hi": self.edges[1:],
                "n_pixels": self.n,
                "abs_rel": mean["abs_rel"],
                "rmse": np.sqrt(mean["sq_err"]),
                "delta1": mean["delta1"],
            }
        )
