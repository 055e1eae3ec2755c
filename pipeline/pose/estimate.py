"""Every variant's motion estimate for every scored pair of a sequence, and the two baselines.

A variant is a choice of features (`encoder`: the depth network's encoder pyramid;
`rgb`: image intensities, classical photometric alignment), of target depth
(`predicted` by the network, or the `sensor`'s), and of weights (the trained network,
or the same architecture at its initial weights: the control that isolates what
training gave the features). Pairs (target i, source i + gap) are solved in batches;
each batch extracts the features of the frames it spans once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.model import DepthNet
from pipeline.pose.features import extract
from pipeline.pose.frames import SequenceFrames
from pipeline.pose.solver import STATUS, AlignOptions, align
from pipeline.trajectory.baselines import open3d_odometry

BASELINES = ("identity", "open3d")


@dataclass(frozen=True)
class Variant:
    """One estimator configuration; `name` is its key in pose_metrics.json and pose_pairs.csv."""

    features: str  # encoder | rgb
    depth: str  # predicted | sensor
    weights: str = "trained"  # trained | untrained (encoder features only)

    @property
    def name(self) -> str:
        """e.g. `encoder_predicted`, `rgb_sensor`, `encoder_untrained_sensor`."""
        mid = "_untrained" if self.weights == "untrained" else ""
        return f"{self.features}{mid}_{self.depth}"


def variants(features: list[str], depths: list[str], control: bool) -> list[Variant]:
    """The variants a pose run scores: every features x depth, plus the untrained encoder with sensor depth."""
    out = [Variant(f, d) for f in features for d in depths]
    if control:
        out.append(Variant("encoder", "sensor", "untrained"))
    return out


@dataclass(frozen=True)
class Pairs:
    """The scored pairs of a sequence: (P,) target index i, source index j = i + gap, gap."""

    target: np.ndarray
    source: np.ndarray
    gap: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


def pairs_for(n: int, gaps: list[int]) -> Pairs:
    """Every (i, i + gap) inside n frames, for each gap (gaps longer than the sequence give none)."""
    t = [np.arange(0, n - g) for g in gaps]
    return Pairs(np.concatenate(t), np.concatenate([x + g for x, g in zip(t, gaps, strict=True)]),
                 np.concatenate([np.full(len(x), g) for x, g in zip(t, gaps, strict=True)]))  # fmt: skip


@dataclass(frozen=True)
class Estimates:
    """One method's result on every pair (a failed pair is flagged, never dropped).

    Attributes:
        motion: (P, 4, 4) float64 estimated T_j_from_i (always finite).
        converged: (P,) bool: the solver's stopping rule was met (Open3D: its success flag).
        residual: (P,) final mean robust cost (NaN for the baselines).
        iterations: (P,) solver iterations over all levels (0 for the baselines).
        status: (P,) the solver's status name (`converged`, `iteration_cap`, ...).
        seconds: wall time of the estimation, feature extraction included.
    """

    motion: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    seconds: float


def _chunks(pairs: Pairs, size: int) -> Iterator[np.ndarray]:
    """Positions of the pairs in batches of `size`."""
    order = np.arange(len(pairs))
    for k in range(0, len(order), size):
        yield order[k : k + size]


def estimate(
    frames: SequenceFrames, pairs: Pairs, variant: Variant, net: DepthNet, predicted: np.ndarray,
    options: AlignOptions, batch_size: int, device: torch.device,
) -> Estimates:  # fmt: skip
    """Aligns every pair with one variant.

    Args:
        frames: the sequence at the estimator's resolution.
        pairs: the pairs to solve.
        variant: features, depth and weights.
        net: the network whose encoder gives `encoder` features (trained or the control).
        predicted: (N, h, w) float32 depth the trained network predicts for every frame.
        options: the solver's settings.
        batch_size: pairs per solve.
        device: where features and the solve run.
    """
    P = len(pairs)
    motion = np.empty((P, 4, 4))
    converged, residual = np.zeros(P, bool), np.zeros(P)
    iterations, status = np.zeros(P, np.int64), np.empty(P, dtype=object)
    depth_all = predicted if variant.depth == "predicted" else frames.depth
    start = time.perf_counter()
    for pos in _chunks(pairs, batch_size):
        t, s = pairs.target[pos], pairs.source[pos]
        span = np.unique(np.concatenate([t, s]))  # the frames this batch needs, once each
        where = {int(f): k for k, f in enumerate(span)}
        with torch.no_grad():
            pyr = extract(net, frames.rgb_tensor(span, device), variant.features, options.strides)
        ti = torch.tensor([where[int(x)] for x in t], device=device)
        si = torch.tensor([where[int(x)] for x in s], device=device)
        depth_t = torch.from_numpy(depth_all[t]).to(device)[:, None]  # (b, 1, h, w) metres
        r = align(pyr.take(ti), pyr.take(si), depth_t, frames.intrinsics, None, options)
        motion[pos] = r.T.double().cpu().numpy()
        converged[pos] = r.converged.cpu().numpy()
        residual[pos] = r.residual.double().cpu().numpy()
        iterations[pos] = r.iterations.cpu().numpy()
        status[pos] = [STATUS[int(k)] for k in r.status.cpu()]
    return Estimates(motion, converged, residual, iterations, status, time.perf_counter() - start)


def baseline(name: str, frames: SequenceFrames, pairs: Pairs) -> Estimates:
    """`identity` (standing still) or `open3d` (Open3D's RGB-D odometry, sensor depth) on every pair."""
    P = len(pairs)
    start = time.perf_counter()
    if name == "identity":
        motion, ok = np.tile(np.eye(4), (P, 1, 1)), np.ones(P, bool)
    else:
        results = [
            open3d_odometry(frames.rgb[i], frames.depth[i], frames.rgb[j], frames.depth[j], frames.intrinsics)
            for i, j in zip(pairs.target, pairs.source, strict=True)
        ]
        motion = np.stack([T for T, _ in results])
        ok = np.array([good for _, good in results], bool)
    status = np.where(ok, "converged", "failed").astype(object)
    return Estimates(motion, ok, np.full(P, np.nan), np.zeros(P, np.int64), status, time.perf_counter() - start)
