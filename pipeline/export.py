"""ONNX export of a trained model, checked against PyTorch before it is written.

    python -m pipeline.export --model models/model.pt --onnx model.onnx [--check-sizes 240x320 112x176]

The ONNX graph is the network itself: input `rgb`, float32 (N, 3, H, W) RGB in [0, 1]
(the normalisation is inside, from the checkpoint); output `depth`, float32
(N, 1, H, W) metres. Batch, height and width are dynamic: any H and W that are
multiples of 2**model.depth (every max-pool exact, as in training), or for a timm
backbone (`model.encoder`) of its largest stride (32 for a ResNet; the traced sample is
the training size rounded up to it). The network was
trained at one resolution (the `train_height`/`train_width` metadata): feed images
resized to it, as `pipeline.predict` does, for the depth scale it learned.

Exporter: the TorchScript exporter (`dynamo=False`) with named dynamic axes. The
torch.export-based one (`dynamo=True`, `dynamic_shapes=`) gives the same graph
numerically (max relative error 3.5e-7 to PyTorch on the default U-Net, dynamic H and
W both) but needs `onnxscript` besides `onnx`, took 12-18 s instead of 3-5 s for the
default 7.8 M-parameter U-Net on a loaded 2-core VM, and names the axes s0, s53, ...
The TorchScript exporter is deprecated upstream but present in the pinned torch 2.13.
If a later torch drops it, switch `_export` to `dynamo=True, dynamic_shapes=...` and add
onnxscript to the `onnx` extra: the check after export tells whether the result is right.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.evaluation.inference import train_resolution
from pipeline.io import atomic_path
from pipeline.logs import setup_logging
from pipeline.model import BackboneUNet, DepthNet, load_model
from pipeline.model.unet import nearest_multiples

log = logging.getLogger("pipeline.export")

INPUT, OUTPUT = "rgb", "depth"
AXES = {0: "batch", 2: "height", 3: "width"}
OPSET = 17  # onnxruntime 1.32 runs up to 23; 17 is what the TorchScript exporter covers fully
MAX_REL_ERROR = 1e-3  # float32 kernels differ in summation order: ~1e-7 expected, 1e-3 means a wrong graph
CHECK_SEED = 0


def _onnx() -> tuple[ModuleType, ModuleType]:
    """The onnx and onnxruntime modules, or a one-line error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise PipelineError(f"{e.name} is not installed; `pip install -e '.[onnx]'` (or `make test`)") from None
    return onnx, onnxruntime


def size_multiple(model: DepthNet) -> int:
    """What H and W must be multiples of: one exact 2x2 max-pool per U-Net level, or a backbone's largest stride.

    A backbone pads other sizes in PyTorch (`BackboneUNet.encode`), but the traced graph
    would bake the sample's padding in, so the exported model takes multiples only.
    """
    if isinstance(model, BackboneUNet):
        return int(model.reductions[-1])
    return int(2**model.cfg.depth)


def _multiple_reason(model: DepthNet) -> str:
    if isinstance(model, BackboneUNet):
        return f"the largest stride of model.encoder {model.cfg.encoder!r}"
    return f"2**model.depth, model.depth is {model.cfg.depth}"


def check_size(model: DepthNet, h: int, w: int) -> None:
    """Raises PipelineError if the model does not accept an (h, w) input, with the nearest sizes that work."""
    f = size_multiple(model)
    bad = [(side, v) for side, v in (("height", h), ("width", w)) if v <= 0 or v % f]
    if bad:
        fixes = "; ".join(f"{side} {v} -> use {' or '.join(map(str, nearest_multiples(v, f)))}" for side, v in bad)
        raise PipelineError(
            f"size {h}x{w}: height and width must be multiples of {f} ({_multiple_reason(model)}): {fixes}"
        )


def _traced(model: DepthNet) -> torch.nn.Module:
    """What is traced: the model, or for a backbone its unpadded path (sizes are multiples of its stride)."""
    if isinstance(model, BackboneUNet):
        # In eval mode like the model: the exporter restores the traced module's mode
        # afterwards, recursively, and a training-mode wrapper would flip the net with it.
        return _Unpadded(model).eval()
    return model


class _Unpadded(torch.nn.Module):
    """`BackboneUNet` without the pad-and-crop, which tracing would freeze at the sample's size."""

    def __init__(self, net: BackboneUNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.decode(self.net.encode(x, pad=False))  # (B, 1, H, W): H, W are multiples of the stride


def sample_size(train_hw: tuple[int, int], f: int) -> tuple[int, int]:
    """The training resolution rounded up to multiples of `f`: the traced input's size."""
    return (-(-train_hw[0] // f) * f, -(-train_hw[1] // f) * f)


def parse_size(text: str) -> tuple[int, int]:
    """'240x320' -> (240, 320); raises PipelineError on anything else."""
    h, sep, w = text.lower().partition("x")
    if not (sep and h.strip().isdigit() and w.strip().isdigit()):
        raise PipelineError(f"size {text!r}: write HEIGHTxWIDTH in pixels, e.g. 240x320")
    return int(h), int(w)


def default_check_sizes(train_hw: tuple[int, int], f: int) -> list[tuple[int, int]]:
    """The training resolution and a second size of another height, width and aspect (about half of it)."""
    h, w = train_hw
    return [(h, w), (max(f, h // 2 // f * f), max(f, w // 2 // f * f) + f)]


def _export(model: DepthNet, path: Path, sample_hw: tuple[int, int]) -> None:
    """Traces the model on one (1, 3, h, w) input into an ONNX file with dynamic batch, height, width."""
    x = torch.rand(1, 3, *sample_hw)  # (1, 3, h, w); the values do not matter for tracing
    with warnings.catch_warnings():
        # The exporter's notice that it is deprecated upstream: the choice is made (module docstring).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            _traced(model),
            (x,),
            str(path),
            dynamo=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: AXES, OUTPUT: AXES},
            opset_version=OPSET,
        )


def _describe(onnx: ModuleType, path: Path, model: DepthNet, meta: dict[str, Any]) -> None:
    """Writes the input contract into the file's metadata (shown by Netron and `onnx` readers), checks the graph."""
    proto = onnx.load(str(path))
    f = size_multiple(model)
    h, w = train_resolution(meta)
    proto.doc_string = (
        f"Monocular depth (U-Net). Input '{INPUT}': float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of {f}; "
        f"trained at {h}x{w}. Output '{OUTPUT}': float32 (N, 1, H, W) depth in metres, in (0, {model.cfg.max_depth})."
    )
    info = {"train_height": h, "train_width": w, "size_multiple": f, "max_depth_m": model.cfg.max_depth}
    info["epoch"] = meta.get("epoch", "")
    for key, value in info.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def compare(ort: ModuleType, path: Path, model: DepthNet, sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Runs the ONNX file with onnxruntime and the model with PyTorch on random images of each size.

    The i-th size is checked with a batch of i + 1 images, so the batch axis is dynamic too.

    Returns:
        One dict per size: batch, height, width and the max relative error |ort - torch| / torch
        (depth is > 0 by construction, so the ratio is always defined).
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(CHECK_SEED)
    results = []
    for i, (h, w) in enumerate(sizes):
        x = torch.rand(i + 1, 3, h, w, generator=gen)  # (B, 3, h, w) in [0, 1]
        with torch.no_grad():
            ref = model(x).double().numpy()  # (B, 1, h, w) metres
        out = session.run([OUTPUT], {INPUT: x.numpy()})[0]  # (B, 1, h, w)
        if out.shape != ref.shape:
            raise PipelineError(f"the ONNX model returned {out.shape} for input {tuple(x.shape)}, PyTorch {ref.shape}")
        rel = float(np.max(np.abs(out - ref) / np.abs(ref)))
        results.append({"batch": i + 1, "height": h, "width": w, "max_rel_error": rel})
    return results


def export_model(
    model_path: str | Path, onnx_path: str | Path, check_sizes: Sequence[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Exports a checkpoint to ONNX, checks it against PyTorch, and only then writes it (atomically).

    Args:
        model_path: a checkpoint written by training.
        onnx_path: the .onnx file to write; a file already there is replaced only by a checked one.
        check_sizes: (height, width) inputs to compare on; default the training resolution and one other.

    Returns:
        The comparison per size (see `compare`).

    Raises:
        PipelineError: bad checkpoint, a size the model does not accept, onnx/onnxruntime
            missing, or an ONNX model that disagrees with PyTorch (then nothing is written).
    """
    onnx, ort = _onnx()
    model, meta = load_model(model_path, map_location="cpu")
    f = size_multiple(model)
    sample = sample_size(train_resolution(meta), f)  # the training size (a backbone's: rounded up)
    sizes = list(check_sizes) if check_sizes else default_check_sizes(sample, f)
    for h, w in (sample, *sizes):
        check_size(model, h, w)
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        _export(model, tmp, sample)
        _describe(onnx, tmp, model, meta)
        results = compare(ort, tmp, model, sizes)
        worst = max(r["max_rel_error"] for r in results)
        if not worst < MAX_REL_ERROR:  # also catches NaN
            raise PipelineError(
                f"{onnx_path}: the exported model disagrees with PyTorch (max relative error {worst:.3g} >= "
                f"{MAX_REL_ERROR:g}); nothing written. Report it with the torch and onnxruntime versions"
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1 on a user-facing error)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.export", description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"), help="checkpoint (default: %(default)s)")
    ap.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    ap.add_argument("--check-sizes", nargs="+", metavar="HxW", help="sizes to compare ONNX and PyTorch on")
    args = ap.parse_args(argv)
    setup_logging("export")
    try:
        sizes = [parse_size(s) for s in args.check_sizes] if args.check_sizes else None
        results = export_model(args.model, args.onnx, sizes)
    except PipelineError as e:
        log.error("%s", e)
        return 1
    for r in results:
        log.info(
            "onnxruntime vs PyTorch, batch %(batch)d at %(height)dx%(width)d: max relative error %(max_rel_error).2e", r
        )
    log.info("wrote %s (dynamic batch, height, width; checked to < %g relative error)", args.onnx, MAX_REL_ERROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
