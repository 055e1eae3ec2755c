"""Model checkpoints: one dict of plain types and tensors, loadable with `weights_only=True`.

Keeping pickled objects out (no dataclasses, numpy scalars, Paths) means a checkpoint
can be loaded safely from an untrusted source and without this code's classes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.config import ModelParams, ParamsError, section_from_dict, to_yaml_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_path
from pipeline.model.build import MODEL_TYPES, DepthNet, build_model

FORMAT_VERSION = 1
_RESERVED = ("state_dict", "model_config", "rgb_mean", "rgb_std", "format_version")
# Model keys added after format 1 was fixed, with the value every older checkpoint had:
# an old `model_config` lacks them and still loads, as the plain U-Net it is.
_ADDED_MODEL_KEYS = {"encoder": "unet", "pretrained": False, "weights": None}


def _plain(obj: Any, key: str) -> Any:
    """`obj` with numpy values turned into Python/torch ones; raises on anything unpicklable safely."""
    if isinstance(obj, np.generic):  # before float: np.float64 subclasses float
        return obj.item()
    if obj is None or isinstance(obj, torch.Tensor):
        return obj
    # Subclasses (torch.__version__ is a TorchVersion(str), IntEnum...) pickle by class name,
    # which weights_only loading refuses: store the exact built-in type.
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{key}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"checkpoint extra '{key}': dict keys must be str or int")
        return {k: _plain(v, f"{key}.{k}") for k, v in obj.items()}
    raise TypeError(
        f"checkpoint extra '{key}' is a {type(obj).__name__}; store plain types "
        "(dict, list, str, int, float, bool, None) or tensors so weights_only loading works"
    )


def _unwrap(model: nn.Module) -> DepthNet:
    """The depth network inside a `torch.compile` wrapper (whose state_dict keys carry `_orig_mod.`)."""
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, MODEL_TYPES):
        raise TypeError(f"save_model expects a UNet or BackboneUNet, got {type(model).__name__}")
    return model


def save_model(path: str | Path, model: nn.Module, extra: dict[str, Any]) -> None:
    """Writes a checkpoint atomically: weights, architecture, RGB stats and `extra`.

    Args:
        path: output file (e.g. `models/model.pt`); never left half-written.
        model: a `UNet` or `BackboneUNet`, possibly wrapped by `torch.compile`. Every weight
            goes in, the backbone's too: loading never needs timm's download.
        extra: metadata stored at the top level (params as a nested dict, epoch,
            val_metrics, optimizer state...); plain types and tensors only.

    Raises:
        TypeError: if `extra` holds a non-plain value or a reserved key.
    """
    net = _unwrap(model)
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise TypeError(f"checkpoint extra uses reserved keys {clash}")
    ckpt = {
        "format_version": FORMAT_VERSION,
        "model_config": to_yaml_dict(net.cfg),
        "rgb_mean": net.rgb_mean.flatten().tolist(),
        "rgb_std": net.rgb_std.flatten().tolist(),
        # CPU + contiguous: loads on any device, whatever memory format training used.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        **{k: _plain(v, k) for k, v in extra.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"model checkpoint {path} not found; train first (`dvc repro train`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle of objects: garbage or truncated
            raise PipelineError(f"{path} is not a readable model checkpoint; re-run `dvc repro train`") from None
        # PyTorch's message suggests weights_only=False, i.e. running the file's code: never for a user.
        raise PipelineError(
            f"{path} holds Python objects beyond tensors and plain values: not a checkpoint this pipeline wrote, "
            "and it is not unpickled (that could run code); point at models/model.pt or re-run `dvc repro train`"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError) as e:  # not a torch file at all
        raise PipelineError(
            f"{path} is not a readable model checkpoint ({type(e).__name__}); re-run `dvc repro train`"
        ) from None
    missing = [k for k in _RESERVED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise PipelineError(f"{path} is not a model checkpoint (missing {missing}); re-run `dvc repro train`")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise PipelineError(
            f"{path} has checkpoint format {ckpt['format_version']}, this code reads {FORMAT_VERSION}; "
            "re-run `dvc repro train` or use the matching code version"
        )
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[DepthNet, dict[str, Any]]:
    """Rebuilds the depth network (U-Net or backbone U-Net) from a checkpoint, in eval mode.

    Args:
        path: a file written by `save_model`.
        map_location: device for the tensors (and the returned model).

    Returns:
        (model, meta): meta is the checkpoint dict without `state_dict`.

    Raises:
        PipelineError: naming the file if it is missing, not a checkpoint, or does
            not match the architecture it declares.
    """
    path = Path(path)
    ckpt = _read(path, map_location)
    try:
        cfg = section_from_dict(ModelParams, {**_ADDED_MODEL_KEYS, **ckpt["model_config"]})
        # Randomly initialised, then every weight from the file: no pretrained download.
        model = build_model(cfg, ckpt["rgb_mean"], ckpt["rgb_std"])
        model.load_state_dict(ckpt["state_dict"])
    except (ParamsError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise PipelineError(f"{path}: weights do not fit the stored model config ({first}); re-run training") from None
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(map_location).eval(), meta
