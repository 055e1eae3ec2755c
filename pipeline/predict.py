"""Depth maps for any RGB images with a trained model.

    python -m pipeline.predict IMAGE... --model models/model.pt --out DIR

For each image (PNG, JPEG, ... any size; grayscale or RGBA become RGB) it writes
`DIR/<stem>_depth.png`, a 16-bit PNG of depth in millimetres (as NYU-derived datasets
store depth), and `DIR/<stem>_depth_preview.png`, a colour preview on a fixed
0..max_depth scale so previews of different images compare. Inference goes through the
evaluate stage's `predict_batch`: the image is seen at the model's training resolution
and the depth resized back to the image's own size. Every input is checked before any
output is written, so a bad file in the list leaves the output folder untouched.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageOps

from pipeline.config import DeviceName, choices
from pipeline.device import pick_device
from pipeline.errors import PipelineError
from pipeline.evaluation.inference import predict_batch, train_resolution
from pipeline.io import atomic_path
from pipeline.logs import setup_logging
from pipeline.model import load_model

log = logging.getLogger("pipeline.predict")

PREVIEW_CMAP = "magma_r"  # near = bright, far = dark; perceptually uniform
UINT16_MAX = 65535  # 65.5 m: far beyond any indoor depth, so clipping never bites in practice


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
    """(H, W) metres -> (H, W) uint16 millimetres, rounded and clipped to 0..65535."""
    return np.clip(np.rint(depth_m * 1000.0), 0, UINT16_MAX).astype(np.uint16)


def colourise(depth_m: np.ndarray, max_depth: float, cmap: str = PREVIEW_CMAP) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 colours on the fixed scale 0..max_depth."""
    rgba = matplotlib.colormaps[cmap](np.clip(depth_m / max_depth, 0.0, 1.0), bytes=True)  # (H, W, 4) uint8
    return rgba[..., :3]


def _save_png(path: Path, array: np.ndarray) -> None:
    # format= because the temporary name's extension is not .png.
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def predict_images(
    paths: Sequence[str | Path], model_path: str | Path, out_dir: str | Path, device: str = "auto",
    flip_tta: bool = False, max_depth: float | None = None,
) -> list[Path]:  # fmt: skip
    """Writes `<stem>_depth.png` (uint16 mm) and `<stem>_depth_preview.png` for each image.

    Args:
        paths: input images.
        model_path: a checkpoint written by training.
        out_dir: output folder (created if missing).
        device: auto | cuda | mps | cpu.
        flip_tta: average with the mirrored image's prediction.
        max_depth: the previews' colour range in metres; default the model's output bound.

    Returns:
        The files written.

    Raises:
        PipelineError: if the model or any input is unreadable (then nothing is written).
    """
    images = [Path(p) for p in paths]
    if not Path(model_path).is_file():
        raise PipelineError(f"{model_path}: model file not found; train one (`dvc repro train`) or pass --model PATH")
    if max_depth is not None and not max_depth > 0:
        raise PipelineError(f"--max-depth is {max_depth}; pass metres > 0")
    model, meta = load_model(model_path, map_location=pick_device(device))
    train_hw = train_resolution(meta)
    max_depth = max_depth if max_depth is not None else float(meta["model_config"]["max_depth"])
    check_inputs(images)
    written = []
    for path in images:
        depth = predict_batch(model, load_rgb(path)[None], train_hw, flip_tta)[0]  # (H, W) metres
        depth_png = Path(out_dir) / f"{path.stem}_depth.png"
        preview_png = Path(out_dir) / f"{path.stem}_depth_preview.png"
        _save_png(depth_png, depth_to_mm16(depth))
        _save_png(preview_png, colourise(depth, max_depth))
        written += [depth_png, preview_png]
        log.info("%s -> %s (%dx%d, median %.2f m)", path, depth_png, *depth.shape, float(np.median(depth)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1 on a user-facing error)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+", type=Path, help="input images (PNG, JPEG, ...)")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"), help="checkpoint (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--device", default="auto", choices=choices(DeviceName))
    ap.add_argument("--flip-tta", action="store_true", help="average with the mirrored image's prediction")
    ap.add_argument("--max-depth", type=float, default=None, help="preview colour range in metres (default: model's)")
    args = ap.parse_args(argv)
    setup_logging("predict")
    try:
        predict_images(args.images, args.model, args.out, args.device, args.flip_tta, args.max_depth)
    except PipelineError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
