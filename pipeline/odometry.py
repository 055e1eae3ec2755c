"""Visual odometry a user can run: chain frame-to-frame direct alignment into a TUM trajectory.

    python -m pipeline.odometry SEQUENCE --out TRAJ.txt [--model models/model.pt]
        [--features encoder|rgb] [--depth predicted|sensor] [--intrinsics FX FY CX CY]

SEQUENCE is a folder in TUM RGB-D's layout (rgb.txt, depth.txt, optional groundtruth.txt)
or a plain folder of images taken in name order (with --intrinsics; predicted depth
only). Intrinsics: --intrinsics when given (it wins), else the folder's calibration.txt,
else TUM's freiburg values by the folder's name. Frames are processed at the model's
training resolution (or --size without a model), the intrinsics scaled to it. Each frame
is aligned to a keyframe (`--tracking keyframe`, the default: a keyframe serves until a
frame fails against it or sees less than 80 % of its points; docs/pose.md measures it
against `--tracking frame`), starting from a constant-velocity guess; a solve that does not
converge from there is solved again from the previous frame's pose and the result that
explains more of the target kept (`better`). A keyframe's levels are prepared once for all
the frames it serves (intensities; encoder features with `--projection keyframe`, which
fits their projection on the keyframe: faster, more drift, docs/pose.md). The trajectory is camera-to-world, the first
frame at the origin, written in TUM's format. With ground truth, ATE and RPE (evo's
errors) are printed over the frames that have a ground-truth pose within 0.02 s (the
nearest, as TUM's tools; docs/odometry-protocol.md), with their counts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.camera import Intrinsics
from pipeline.device import pick_device
from pipeline.errors import PipelineError
from pipeline.evaluation.inference import predict_depth, train_resolution
from pipeline.io import write_text_atomic
from pipeline.logs import setup_logging
from pipeline.model import DepthNet, load_model
from pipeline.pose.features import FEATURE_KINDS, Pyramid, extract, extract_with_depth
from pipeline.pose.frames import SequenceFrames, frames_from_images, load_frames, read_rgb
from pipeline.pose.solver import AlignOptions, AlignResult, PreparedTarget, align, prepare_target
from pipeline.sequences.layout import pose_line, read_sequence
from pipeline.trajectory.metrics import score_trajectory
from pipeline.trajectory.poses import check_poses

log = logging.getLogger("pipeline")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_SIZE = (240, 320)  # without a model: NYU's 480x640 halved, the training default
DEPTH_WEIGHT = 1.0  # the geometric term's default weight (docs/pose.md: The geometric term)
KEYFRAME_MIN_VALID = 0.8  # of a keyframe's points (AlignResult.valid_fraction) still in view and with depth


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None: the help text says what applies)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.odometry",
        description=__doc__.splitlines()[0],
        formatter_class=_Help,
    )
    ap.add_argument("sequence", type=Path, help="a TUM-layout folder, or a folder of images in name order")
    ap.add_argument(
        "--out", type=Path, required=True, help="the trajectory, TUM format (timestamp tx ty tz qx qy qz qw)"
    )
    ap.add_argument("--model", type=Path, help="the depth network (models/model.pt): needed for encoder features "
                    "or predicted depth")  # fmt: skip
    ap.add_argument("--features", choices=FEATURE_KINDS, default="encoder",
                    help="what is aligned: the network's encoder pyramid, or image intensities")  # fmt: skip
    ap.add_argument("--depth", choices=("predicted", "sensor"), default="predicted",
                    help="the target frame's depth: the network's, or depth.txt's sensor frames")  # fmt: skip
    ap.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                    help="pixels, at the images' own size; wins over calibration.txt and TUM's values "
                    "(default: calibration.txt, else TUM's freiburg values by the folder's name)")  # fmt: skip
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="working resolution without a model "
                    f"(default: {DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]}); with one, its training resolution")  # fmt: skip
    ap.add_argument("--fps", type=float, default=30.0, help="a plain folder's frame rate, for its timestamps")
    ap.add_argument("--groundtruth", choices=("nearest", "interpolated"), default="nearest",
                    help="ground truth per frame: the nearest pose within 0.02 s (TUM's tools, evo), or "
                    "slerped to the frame's time (labelled in the output; not the field's figure)")  # fmt: skip
    ap.add_argument("--tracking", choices=("keyframe", "frame"), default="keyframe",
                    help="align each frame to a keyframe kept while it holds, or to the previous frame")  # fmt: skip
    ap.add_argument("--projection", choices=("pair", "keyframe"), default="pair",
                    help="encoder features: centre and project each pair's maps on the pair's statistics, or on "
                    "the keyframe's, fitted once (faster; more drift on fr1/rpy: docs/pose.md)")  # fmt: skip
    ap.add_argument("--iterations", type=int, default=AlignOptions().iterations, help="LM iterations per level")
    ap.add_argument("--depth-weight", type=float, default=DEPTH_WEIGHT,
                    help="with --depth sensor, the geometric term's weight beside the photometric one: the "
                    "current frame's depth against the keyframe's points moved (0: photometric only; "
                    "docs/pose.md)")  # fmt: skip
    ap.add_argument("--device", default="auto", help="auto | cuda | mps | cpu")
    return ap.parse_args(argv)


@dataclass(frozen=True)
class Odometry:
    """A chained trajectory and how it was made."""

    times: np.ndarray  # (N,)
    poses: np.ndarray  # (N, 4, 4) camera-to-world, the first at the origin
    converged: np.ndarray  # (N - 1,) per frame: its solve converged
    seconds: float
    keyframes: np.ndarray | None = None  # (N,) bool: the frames others were tracked against


def _check(a: argparse.Namespace) -> None:
    """Refuses what cannot run, in one line naming what to fix."""
    if not a.sequence.is_dir():
        raise PipelineError(f"{a.sequence}: not a folder; give a TUM-layout sequence or a folder of images")
    needs_model = a.features == "encoder" or a.depth == "predicted"
    if needs_model and a.model is None:
        raise PipelineError(
            f"--features {a.features} --depth {a.depth} need the depth network: add --model models/model.pt"
        )
    if not 0 <= a.depth_weight <= 100:
        raise PipelineError(f"--depth-weight {a.depth_weight}: give a weight in [0, 100] (0: photometric only)")
    if a.model is not None and not a.model.is_file():
        raise PipelineError(f"{a.model}: no such model file; train one (`dvc repro train`) or fix --model")


def load(a: argparse.Namespace, hw: tuple[int, int]) -> SequenceFrames:
    """The sequence's frames at `hw`, from a TUM-layout folder or a plain folder of images."""
    k = a.intrinsics
    if (a.sequence / "rgb.txt").is_file():
        seq = read_sequence(
            a.sequence,
            require_depth=a.depth == "sensor",
            require_groundtruth=False,
            interpolate_groundtruth=a.groundtruth == "interpolated",
        )
        if k is not None:
            native = seq.intrinsics
            seq = replace(seq, intrinsics=Intrinsics(k[0], k[1], k[2], k[3], native.width, native.height))
        return load_frames(seq, hw, 0)
    images = sorted(p for p in a.sequence.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PipelineError(f"{a.sequence}: no rgb.txt and no images ({', '.join(IMAGE_SUFFIXES)}); nothing to track")
    if a.depth == "sensor":
        raise PipelineError(f"{a.sequence}: a plain image folder has no sensor depth; use --depth predicted")
    if k is None:
        raise PipelineError(f"{a.sequence}: a plain image folder needs --intrinsics FX FY CX CY (pixels)")
    first = read_rgb(images[0])
    return frames_from_images(images, Intrinsics(k[0], k[1], k[2], k[3], first.shape[1], first.shape[0]), hw, a.fps)


def options_for(
    hw: tuple[int, int], iterations: int = AlignOptions().iterations, depth_weight: float = DEPTH_WEIGHT
) -> AlignOptions:
    """The solver's settings for frames of `hw`: its defaults, `iterations` a level at most, this `depth_weight`.

    The finest level's points grow with the frame's area inside the solver
    (`solver.point_budget`: at 480x640, 4 x 4096), so 480x640 keeps 240x320's density there.
    """
    del hw  # the solver scales the point budget from the frames themselves
    return AlignOptions(iterations=iterations, depth_weight=depth_weight)


def track(frames: SequenceFrames, model: DepthNet | None, features: str, depth: str, options: AlignOptions,
          device: torch.device, keyframes: bool = True, projection: str = "pair") -> Odometry:  # fmt: skip
    """Tracks every frame against a keyframe (or its predecessor) and chains the poses, the first at the origin.

    Frame k is aligned to the current keyframe from the constant-velocity guess (the last
    motion applied once more) and, when that does not converge, again from the previous
    frame's pose (`better` keeps one). With `keyframes`, a keyframe serves until a frame
    fails against it or keeps less than `KEYFRAME_MIN_VALID` of its points in view; then
    the previous frame becomes the keyframe and frame k is solved against it. Without,
    every frame is the next one's keyframe (frame-to-frame).

    The keyframe's levels are prepared once (`prepare_target`) for intensities, and for
    encoder features with `projection` "keyframe" (their centring and projection fitted on
    the keyframe alone); with "pair" each encoder pair is projected on its own statistics.
    """
    start = time.perf_counter()
    n = len(frames)
    poses, converged, is_key = np.tile(np.eye(4), (n, 1, 1)), np.zeros(n - 1, bool), np.zeros(n, bool)
    camera = frames.intrinsics
    prepare = features != "encoder" or projection == "keyframe"
    prev = _frame(frames, 0, model, features, depth, options, device)
    key, key_k = _Key.of(prev, camera, options, prepare), 0
    eye = torch.eye(4, device=device)[None]  # (1, 4, 4)
    from_key, velocity = eye, eye  # T_prev_from_key, T_prev_from_prevprev
    for k in range(1, n):
        cur = _frame(frames, k, model, features, depth, options, device)
        r = _solve(key, cur, camera, velocity @ from_key, from_key, options)
        if keyframes and key_k != k - 1 and not _holds(r):
            # The keyframe no longer serves: its successor takes over.
            key, key_k, from_key = _Key.of(prev, camera, options, prepare), k - 1, eye
            r = _solve(key, cur, camera, velocity, eye, options)
        is_key[key_k] = True
        T = check_poses(r.T.double().cpu().numpy(), "motion")  # (1, 4, 4) T_k_from_key, projected onto SO(3)
        poses[k] = poses[key_k] @ np.linalg.inv(T[0])
        converged[k - 1] = bool(r.converged[0])
        # Reused as the next guess: projected, so float32 rounding does not compound over the frames.
        Tt = torch.from_numpy(T).to(device=device, dtype=torch.float32)
        velocity, from_key = Tt @ torch.linalg.inv(from_key), Tt
        prev = cur
        if not keyframes:
            key, key_k, from_key = _Key.of(cur, camera, options, prepare), k, eye
    return Odometry(frames.times, poses, converged, time.perf_counter() - start, is_key)


@dataclass(frozen=True)
class _Key:
    """The frame others are aligned to: its pyramid and depth, and maybe its levels prepared once (`prepare_target`)."""

    pyramid: Pyramid
    depth: torch.Tensor  # (1, 1, h, w) metres
    prepared: PreparedTarget | None  # None: each pair prepares the keyframe's levels itself

    @staticmethod
    def of(frame: tuple[Pyramid, torch.Tensor], camera: Intrinsics, options: AlignOptions, prepare: bool) -> _Key:
        pyramid, depth = frame
        return _Key(pyramid, depth, prepare_target(pyramid, depth, camera, options) if prepare else None)


def _solve(key: _Key, cur: tuple[Pyramid, torch.Tensor], camera: Intrinsics, guess: torch.Tensor,
           fallback: torch.Tensor, options: AlignOptions) -> AlignResult:  # fmt: skip
    """T_cur_from_key from `guess` (1, 4, 4), solved again from `fallback` when it does not converge.

    `cur` is the frame's pyramid and depth (the geometric term's source depth, when it is on).
    """
    pyramid, depth = cur
    r = align(key.pyramid, pyramid, key.depth, camera, guess, options, key.prepared, depth)
    if not bool(r.converged[0]):
        r = better(r, align(key.pyramid, pyramid, key.depth, camera, fallback, options, key.prepared, depth))
    return r


def _holds(r: AlignResult) -> bool:
    """Whether a keyframe still serves for this frame: the solve converged with enough of its points in view."""
    return bool(r.converged[0]) and float(r.valid_fraction[0]) >= KEYFRAME_MIN_VALID


def better(first: AlignResult, second: AlignResult) -> AlignResult:
    """The better of two solves of one pair (batch of 1): a converged one, else the lower residual ratio.

    Not the lower `residual`: each solve sets its own Huber scale from its own residuals
    (`robust.huber_scale`), so a solve stuck where the residuals are large gets a large
    scale and a deceptively small mean Huber cost. `residual_ratio` (unexplained over total
    target-feature variance on the pixels used) needs no scale, so the two compare.
    """
    if bool(first.converged[0]) != bool(second.converged[0]):
        return first if bool(first.converged[0]) else second
    return second if float(second.residual_ratio[0]) < float(first.residual_ratio[0]) else first


def _frame(frames: SequenceFrames, k: int, model: DepthNet | None, features: str, depth: str,
           options: AlignOptions, device: torch.device) -> tuple[Pyramid, torch.Tensor]:  # fmt: skip
    """Frame k's feature pyramid and its depth (1, 1, h, w): predicted by the network or the sensor's."""
    idx = np.array([k])
    rgb = frames.rgb_tensor(idx, device)  # (1, 3, h, w)
    if depth == "predicted" and features == "encoder":
        assert model is not None  # _check: both need the model
        return extract_with_depth(model, rgb, options.strides)  # one encoder pass for both
    pyramid = extract(model, rgb, features, options.strides)
    if depth == "sensor":
        return pyramid, frames.depth_tensor(idx, device)
    assert model is not None  # _check: predicted depth needs the model
    return pyramid, predict_depth(model, frames.rgb[idx], frames.rgb.shape[1:3])[:, None]


def write_trajectory(path: Path, times: np.ndarray, poses: np.ndarray) -> None:
    """A TUM trajectory file (`timestamp tx ty tz qx qy qz qw` a line, camera-to-world), written atomically."""
    header = "# timestamp tx ty tz qx qy qz qw (camera-to-world; python -m pipeline.odometry)\n"
    write_text_atomic(
        path, header + "\n".join(pose_line(float(t), P) for t, P in zip(times, poses, strict=True)) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (1 with one line on bad input)."""
    setup_logging("odometry")
    a = _args(argv)
    try:
        _check(a)
        device = pick_device(a.device, "--device")
        model, hw = None, (a.size[0], a.size[1]) if a.size else DEFAULT_SIZE
        if a.model is not None:
            model, meta = load_model(a.model, map_location=device)
            hw = train_resolution(meta)
        frames = load(a, hw)
        if len(frames) < 2:
            raise PipelineError(f"{a.sequence}: {len(frames)} frame(s); odometry needs at least two")
        # the geometric term compares measured depths only (`estimate.variant_options` says why)
        options = options_for(hw, a.iterations, a.depth_weight if a.depth == "sensor" else 0.0)
        odo = track(
            frames,
            model,
            a.features,
            a.depth,
            options,
            device,
            keyframes=a.tracking == "keyframe",
            projection=a.projection,
        )
        write_trajectory(a.out, odo.times, odo.poses)
    except PipelineError as e:
        log.error("%s", e)
        return 1
    fps = (len(frames) - 1) / odo.seconds
    print(f"{a.out}: {len(frames)} frames at {hw[0]}x{hw[1]}, {fps:.2f} frames/s on {device.type}; "
          f"{int(odo.converged.sum())}/{len(odo.converged)} pairs converged")  # fmt: skip
    if frames.poses is not None:
        print(score_line(frames, odo, a.groundtruth))
    return 0


def score(frames: SequenceFrames, odo: Odometry) -> dict:
    """`score_trajectory` of the tracked poses against the frames that have ground truth (RPE at gap 1)."""
    m = frames.has_groundtruth
    return score_trajectory(frames.times[m], frames.groundtruth[m], odo.times, odo.poses, gaps=(1,))


def score_line(frames: SequenceFrames, odo: Odometry, groundtruth: str = "nearest") -> str:
    """The printed scores: ATE (SE(3), Sim(3)) and per-frame RPE over the frames and pairs with ground truth."""
    s = score(frames, odo)
    se3, sim3, rpe = s["ate"]["se3"], s["ate"]["sim3"], s["rpe"]["gap_1"]
    label = "nearest ground-truth pose within 0.02 s" if groundtruth == "nearest" else (
        "ground truth INTERPOLATED to frame times, not TUM's scoring")  # fmt: skip
    counts = f"scored {s['frames_scored']}/{s['frames']} frames, {rpe['n']}/{len(odo.times) - 1} pairs"
    return (f"ATE RMSE {se3['rmse_m']:.4f} m (SE(3) aligned), {sim3['rmse_m']:.4f} m (Sim(3), scale "
            f"{sim3['scale']:.3f}); RPE per frame {rpe['trans_m']['rmse']:.4f} m, {rpe['rot_deg']['rmse']:.3f} deg; "
            f"{counts} ({label})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
