"""Error as a function of ground-truth depth: pixel-pooled metrics per 0.5 m bin, streamed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import per_image_metrics_torch

BIN_WIDTH_M = 0.5  # error_by_depth.csv: ground-truth depth bins of 0.5 m


def depth_bin_edges(max_depth: float, width: float = BIN_WIDTH_M) -> np.ndarray:
    """0, 0.5, 1.0, ... up to max_depth (the last bin is shorter if max_depth is not a multiple)."""
    lows = np.arange(math.ceil(max_depth / width - 1e-9)) * width
    return np.append(lows, max_depth)


class DepthBinAccumulator:
    """Pixel-pooled abs_rel, rmse and delta1 per ground-truth depth bin, summed over batches.

    Each bin's pixels go through `per_image_metrics_torch` as one "image"; its means times
    the pixel count give the sums (rmse via its square), so no metric is re-implemented.
    Works on the tensors' device; one host transfer per batch.
    """

    def __init__(self, max_depth: float) -> None:
        self.edges = depth_bin_edges(max_depth)
        nb = len(self.edges) - 1
        self.n = np.zeros(nb, np.int64)
        self.sums = {"abs_rel": np.zeros(nb), "sq_err": np.zeros(nb), "delta1": np.zeros(nb)}

    def add(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> None:
        """Adds a batch: pred (clipped), gt (B, H, W) metres, mask (B, H, W) bool from `eval_mask`."""
        p, g = pred[mask], gt[mask]  # (P,) valid pixels
        inner = torch.as_tensor(self.edges[1:-1], dtype=g.dtype, device=g.device)
        bins = torch.bucketize(g, inner, right=True)  # (P,) lo <= g < hi, as np.digitize
        order = torch.argsort(bins, stable=True)  # groups the pixels by bin
        counts = torch.bincount(bins, minlength=len(self.n)).cpu().numpy()  # (nb,)
        p_bins, g_bins = torch.split(p[order], counts.tolist()), torch.split(g[order], counts.tolist())
        filled = np.flatnonzero(counts)
        per_bin = []
        for b in filled:
            pb, gb = p_bins[b][None], g_bins[b][None]  # (1, Pb): the bin as one image
            m = per_image_metrics_torch(pb, gb, torch.ones_like(pb, dtype=torch.bool))
            per_bin.append(torch.cat([m["abs_rel"], m["rmse"], m["delta1"]]))  # (3,)
        if not per_bin:
            return
        abs_rel, rmse, delta1 = torch.stack(per_bin).cpu().double().numpy().T  # (3, n_filled)
        n = counts[filled]
        self.n[filled] += n
        self.sums["abs_rel"][filled] += n * abs_rel
        self.sums["sq_err"][filled] += n * rmse**2
        self.sums["delta1"][filled] += n * delta1

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
