"""Every variant's motion estimate for every scored pair of a sequence, and the two baselines.

A variant is a choice of features (`encoder`: the depth network's encoder pyramid;
`rgb`: image intensities, classical photometric alignment), of target depth
(`predicted` by the network, or the `sensor`'s), and of weights (the trained network,
or the same architecture at its initial weights: the control that isolates what
training gave the features). Pairs (target i, source i + gap) are solved in batches in
order of target frame, whatever their gap, and each frame's features are extracted once
per sequence: a small cache holds the pyramids of the frames the next batches still need
(`FrameCache`), and `estimate_group` aligns every depth variant of one features x weights
choice from the same extraction (the encoder pass was repeated per gap and per depth
variant before: 2 depths x 3 gaps x 2 frames = 12 passes a frame, now 1).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.model import DepthNet
from pipeline.pose.features import Pyramid, extract
from pipeline.pose.frames import Pairs, SequenceFrames
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
    """Positions of the pairs in batches of `size`, in order of target frame (so a frame's pairs come together)."""
    order = np.argsort(pairs.target, kind="stable")
    for k in range(0, len(order), size):
        yield order[k : k + size]


class FrameCache:
    """Per-frame feature pyramids, least recently used first out: each frame is extracted once.

    Batches walk the pairs in order of target frame, so a frame is needed by batches a
    few gaps apart only; `capacity` frames (a batch's span plus the largest gap) suffice.
    """

    def __init__(self, net: DepthNet | None, kind: str, strides: tuple[int, ...], capacity: int) -> None:
        self.net, self.kind, self.strides, self.capacity = net, kind, strides, capacity
        self.frames: OrderedDict[int, Pyramid] = OrderedDict()
        self.extracted = 0  # frames encoded so far (a check on the caching)

    def pyramid(self, frames: SequenceFrames, index: np.ndarray, device: torch.device) -> Pyramid:
        """The pyramid of frames `index` (in that order), extracting only those not held."""
        missing = [int(i) for i in dict.fromkeys(index.tolist()) if int(i) not in self.frames]
        if missing:
            with torch.no_grad():
                pyr = extract(self.net, frames.rgb_tensor(np.array(missing), device), self.kind, self.strides)
            self.extracted += len(missing)
            for k, i in enumerate(missing):
                self.frames[i] = pyr.take(slice(k, k + 1))
        for i in index.tolist():
            self.frames.move_to_end(int(i))
        out = Pyramid.cat([self.frames[int(i)] for i in index.tolist()])
        while len(self.frames) > max(self.capacity, len(index)):
            self.frames.popitem(last=False)
        return out


def estimate_group(
    frames: SequenceFrames, pairs: Pairs, group: list[Variant], net: DepthNet, predicted: np.ndarray,
    options: AlignOptions, batch_size: int, device: torch.device,
) -> dict[str, Estimates]:  # fmt: skip
    """Aligns every pair with each variant of `group` (same features and weights, e.g. sensor and predicted depth).

    Each frame's features are extracted once for the whole group (`FrameCache`). Arguments
    as `estimate`. Each variant's `seconds` is its own alignment time plus an equal share of
    the extraction.

    Returns:
        {variant name: Estimates}.
    """
    if len({(v.features, v.weights) for v in group}) != 1:
        raise ValueError("estimate_group: the variants must share features and weights")
    P, span = len(pairs), int(pairs.gap.max(initial=0)) if len(pairs) else 0
    cache = FrameCache(net, group[0].features, options.strides, capacity=2 * (batch_size + span) + 2)
    out = {v.name: _Filling(P) for v in group}
    t_extract = 0.0
    for pos in _chunks(pairs, batch_size):
        t, s = pairs.target[pos], pairs.source[pos]
        start = time.perf_counter()
        tgt, src = cache.pyramid(frames, t, device), cache.pyramid(frames, s, device)
        t_extract += time.perf_counter() - start
        for v in group:
            start = time.perf_counter()
            depth_all = predicted if v.depth == "predicted" else frames.depth
            depth_t = torch.from_numpy(depth_all[t]).to(device)[:, None]  # (b, 1, h, w) metres
            opts = variant_options(options, v)
            depth_s = torch.from_numpy(depth_all[s]).to(device)[:, None] if opts.depth_weight > 0 else None
            out[v.name].put(pos, align(tgt, src, depth_t, frames.intrinsics, None, opts, depth_src=depth_s))
            out[v.name].seconds += time.perf_counter() - start
    return {name: f.done(t_extract / len(group)) for name, f in out.items()}


def variant_options(options: AlignOptions, variant: Variant) -> AlignOptions:
    """The solver's options for `variant`: the geometric term only where the depth is the sensor's.

    The term compares the two frames' depths. Measured sensor depth agrees with itself;
    the network's predictions of two frames do not agree well enough for it to help (with
    the term on the demo model's predicted depth, synthetic success moved by a few points
    either way: docs/pose.md, The geometric term), so predicted-depth variants align on
    the photometric term alone.
    """
    return options if variant.depth == "sensor" else dataclasses.replace(options, depth_weight=0.0)


def estimate(
    frames: SequenceFrames, pairs: Pairs, variant: Variant, net: DepthNet, predicted: np.ndarray,
    options: AlignOptions, batch_size: int, device: torch.device,
) -> Estimates:  # fmt: skip
    """Aligns every pair with one variant (`estimate_group` of one).

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
    return estimate_group(frames, pairs, [variant], net, predicted, options, batch_size, device)[variant.name]


class _Filling:
    """One variant's per-pair arrays while batches arrive."""

    def __init__(self, P: int) -> None:  # noqa: N803
        self.motion = np.tile(np.eye(4), (P, 1, 1))
        self.converged, self.residual = np.zeros(P, bool), np.zeros(P)
        self.iterations, self.status = np.zeros(P, np.int64), np.empty(P, dtype=object)
        self.seconds = 0.0

    def put(self, pos: np.ndarray, r) -> None:
        """Stores an `AlignResult` for the pairs at `pos`."""
        self.motion[pos] = r.T.double().cpu().numpy()
        self.converged[pos] = r.converged.cpu().numpy()
        self.residual[pos] = r.residual.double().cpu().numpy()
        self.iterations[pos] = r.iterations.cpu().numpy()
        self.status[pos] = [STATUS[int(k)] for k in r.status.cpu()]

    def done(self, extra_seconds: float) -> Estimates:
        return Estimates(self.motion, self.converged, self.residual, self.iterations, self.status,
                         self.seconds + extra_seconds)  # fmt: skip


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
