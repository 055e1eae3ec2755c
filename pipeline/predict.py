"""Depth maps (and point clouds) for any RGB images with a trained model.

    python -m pipeline.predict IMAGE... --model models/model.pt --out DIR [--fit pad|crop] [--ply]

For each image (PNG, JPEG, ... any size; grayscale or RGBA become RGB) it writes
`DIR/<stem>_depth.png`, a 16-bit PNG of depth in millimetres (as NYU-derived datasets
store depth; 0 = no prediction), `DIR/<stem>_depth_preview.png`, a colour preview on a
fixed 0..max_depth scale so previews of different images compare, and with `--ply`
`DIR/<stem>.ply`, the coloured point cloud. An image of another aspect than the
training one is framed without distortion (`pipeline.camera`: reflect-padded by
default, or centre-cropped), then goes through the evaluate stage's `predict_batch`:
seen at the model's training resolution, the depth resized back to the frame and the
frame cut back to the image. Every input is checked before any output is written, so a
bad file in the list leaves the output folder untouched.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageOps
from torch import nn

from pipeline.camera import NYU_KINECT, Fit, Framing, Intrinsics, framing
from pipeline.config import DeviceName, choices
from pipeline.device import pick_device
from pipeline.errors import PipelineError
from pipeline.evaluation.inference import predict_batch, train_resolution
from pipeline.io import atomic_path
from pipeline.logs import setup_logging
from pipeline.model import load_model
from pipeline.pointcloud import back_project, write_ply

log = logging.getLogger("pipeline.predict")

PREVIEW_CMAP = "magma_r"  # near = bright, far = dark; perceptually uniform
UINT16_MAX = 65535  # 65.5 m: far beyond any indoor depth, so clipping never bites in practice
NO_DEPTH_RGB = (128, 128, 128)  # previews: a grey that magma never takes, where a crop left no prediction


def load_rgb(path: str | Path) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 RGB, honouring the EXIF orientation.

    Raises:
        PipelineError: naming the file, if it is missing or not an image Pillow can decode.
    """
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))  # decodes fully: catches truncation
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PipelineError(f"{path}: not a readable image ({e}); pass PNG or JPEG files") from None


def check_inputs(paths: Sequence[Path]) -> None:
    """Checks that every input decodes and that no two share a stem (their outputs would collide).

    Raises:
        PipelineError: naming the first bad file, or the clashing pair.
    """
    stems: dict[str, Path] = {}
    for path in paths:
        load_rgb(path)
        if path.stem in stems:
            raise PipelineError(f"{stems[path.stem]} and {path} would both write {path.stem}_depth.png; rename one")
        stems[path.stem] = path


def depth_to_mm16(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 millimetres, rounded and clipped to 0..65535; NaN (no prediction) -> 0."""
    mm = np.rint(np.nan_to_num(depth_m, nan=0.0) * 1000.0)
    return np.clip(mm, 0, UINT16_MAX).astype(np.uint16)


def colourise(depth_m: np.ndarray, max_depth: float, cmap: str = PREVIEW_CMAP) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 colours on the fixed scale 0..max_depth."""
    rgba = matplotlib.colormaps[cmap](np.clip(depth_m / max_depth, 0.0, 1.0), bytes=True)  # (H, W, 4) uint8
    rgb = rgba[..., :3].copy()
    rgb[np.isnan(depth_m)] = NO_DEPTH_RGB
    return rgb


def _save_png(path: Path, array: np.ndarray) -> None:
    # format= because the temporary name's extension is not .png.
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


@dataclass(frozen=True)
class PredictOptions:
    """How `predict_images` predicts and what it writes besides the depth PNGs.

    `fx`, `fy`, `cx`, `cy` (pixels of each input image) override the NYU Kinect
    intrinsics that `--ply` otherwise derives from each image's framing.
    """

    device: DeviceName = "auto"
    flip_tta: bool = False
    max_depth: float | None = None
    """The previews' colour range in metres; None: the model's output bound."""
    fit: Fit = "pad"
    ply: bool = False
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None

    def check(self) -> None:
        """Raises PipelineError naming the first bad option."""
        if self.max_depth is not None and not self.max_depth > 0:
            raise PipelineError(f"--max-depth is {self.max_depth}; pass metres > 0")
        given = [f"--{n}" for n in ("fx", "fy", "cx", "cy") if getattr(self, n) is not None]
        if given and not self.ply:
            raise PipelineError(f"{' '.join(given)} only apply to the point cloud; add --ply")
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise PipelineError(f"--{name} is {value}; pass the focal length in pixels (> 0)")
        for name in ("cx", "cy"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise PipelineError(f"--{name} is {value}; pass the principal point in pixels")

    def camera(self, frame: Framing) -> Intrinsics:
        """The intrinsics of an image's pixels: the Kinect's for its framing, with the overrides."""
        k = frame.intrinsics(NYU_KINECT)
        return replace(k, **{n: v for n in ("fx", "fy", "cx", "cy") if (v := getattr(self, n)) is not None})


def depth_for_image(
    model: nn.Module, rgb: np.ndarray, train_hw: tuple[int, int], fit: Fit = "pad", flip_tta: bool = False
) -> tuple[np.ndarray, Framing]:
    """Depth of one image of any size, seen undistorted at the training aspect.

    Args:
        model: the depth network, in eval mode.
        rgb: (H, W, 3) uint8.
        train_hw: (h, w) the model was trained at.
        fit: `pad` (reflect) or `crop` (centre) to the training aspect; a no-op for an
            image already at it, which then takes exactly the evaluate stage's path.
        flip_tta: average with the mirrored frame's prediction.

    Returns:
        ((H, W) float32 metres, NaN where a crop left no prediction; the framing used).
    """
    frame = framing(rgb.shape[:2], train_hw, fit)
    depth = predict_batch(model, frame.frame(rgb)[None], train_hw, flip_tta)[0]  # (h', w') metres
    return frame.unframe(depth), frame  # (H, W)


def _write_outputs(
    stem: Path, rgb: np.ndarray, depth: np.ndarray, camera: Intrinsics | None, max_depth: float
) -> list[Path]:
    """The depth PNG, its preview and (with a camera) the point cloud of one image; `stem` is DIR/<name>."""
    depth_png, preview_png = stem.with_name(f"{stem.name}_depth.png"), stem.with_name(f"{stem.name}_depth_preview.png")
    _save_png(depth_png, depth_to_mm16(depth))
    _save_png(preview_png, colourise(depth, max_depth))
    if camera is None:
        return [depth_png, preview_png]
    ply = stem.with_name(f"{stem.name}.ply")
    points, valid = back_project(depth, camera)  # (N, 3) metres, (H, W)
    write_ply(ply, points, rgb[valid])
    return [depth_png, preview_png, ply]


def predict_images(
    paths: Sequence[str | Path], model_path: str | Path, out_dir: str | Path, options: PredictOptions | None = None
) -> list[Path]:
    """Writes `<stem>_depth.png` (uint16 mm), `<stem>_depth_preview.png` and optionally `<stem>.ply` per image.

    Args:
        paths: input images.
        model_path: a checkpoint written by training.
        out_dir: output folder (created if missing).
        options: device, flip TTA, framing, point clouds (defaults: `PredictOptions()`).

    Returns:
        The files written.

    Raises:
        PipelineError: if the model, any input or an option is bad (then nothing is written).
    """
    opts = options or PredictOptions()
    images = [Path(p) for p in paths]
    if not Path(model_path).is_file():
        raise PipelineError(f"{model_path}: model file not found; train one (`dvc repro train`) or pass --model PATH")
    opts.check()
    model, meta = load_model(model_path, map_location=pick_device(opts.device))
    train_hw = train_resolution(meta)
    max_depth = opts.max_depth if opts.max_depth is not None else float(meta["model_config"]["max_depth"])
    check_inputs(images)
    written = []
    for path in images:
        rgb = load_rgb(path)  # (H, W, 3) uint8
        depth, frame = depth_for_image(model, rgb, train_hw, opts.fit, opts.flip_tta)  # (H, W) metres
        camera = opts.camera(frame) if opts.ply else None
        written += _write_outputs(Path(out_dir) / path.stem, rgb, depth, camera, max_depth)
        fitted = {"pad": "padded", "crop": "cropped"}[opts.fit]
        seen = f"{fitted} to {frame.frame_hw[0]}x{frame.frame_hw[1]}" if frame.frame_hw != depth.shape else "as is"
        log.info("%s -> %s (%dx%d, %s, median %.2f m)", path, out_dir, *depth.shape, seen, np.nanmedian(depth))
    return written


FIT_HELP = (
    "bring an image of another aspect to the training one without distortion: pad (default; reflect, every pixel "
    "gets a depth) or crop (centre; the cut border gets none, 0 in the PNG)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1 on a user-facing error)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+", type=Path, help="input images (PNG, JPEG, ...)")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"), help="checkpoint (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--device", default="auto", choices=choices(DeviceName))
    ap.add_argument("--flip-tta", action="store_true", help="average with the mirrored image's prediction")
    ap.add_argument("--max-depth", type=float, default=None, help="preview colour range in metres (default: model's)")
    ap.add_argument("--fit", default="pad", choices=choices(Fit), help=FIT_HELP)
    ap.add_argument("--ply", action="store_true", help="also write <name>.ply, the coloured point cloud (metres)")
    for name in ("fx", "fy", "cx", "cy"):
        ap.add_argument(f"--{name}", type=float, help="--ply: in the input image's pixels (default: NYU's Kinect)")
    args = ap.parse_args(argv)
    setup_logging("predict")
    camera = {k: getattr(args, k) for k in ("fx", "fy", "cx", "cy")}
    opts = PredictOptions(args.device, args.flip_tta, args.max_depth, args.fit, args.ply, **camera)
    try:
        predict_images(args.images, args.model, args.out, opts)
    except PipelineError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
