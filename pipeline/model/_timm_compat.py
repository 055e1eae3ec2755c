"""`import timm` that works beside a CPU-only torch: the one place this project imports timm.

Why: timm imports torchvision (e.g. `timm.layers.create_norm` imports
`torchvision.ops.misc.FrozenBatchNorm2d`). PyPI's torchvision 0.28.0 is a CUDA build whose
C extension (`torchvision/_C.so`) links libtorch_cuda.so; beside the CPU torch 2.13.0 wheel it
cannot be loaded, and `import torchvision` then dies in `torchvision/_meta_registrations.py`,
which registers fake kernels for `torchvision::nms` and `torchvision::qnms` without checking
that those operators exist ("RuntimeError: operator torchvision::nms does not exist").

What: before torchvision is first imported, and only when its C extension cannot be
loaded, the two operator *schemas* are declared, so that registration succeeds and
torchvision's pure-Python parts (all that timm's CNN backbones use) import. `nms`/`qnms`
get no kernel: they stay unusable, and nothing in this project calls them. Where the C
extension loads (a CUDA torch, or a matching CPU torchvision) nothing is declared.

timm is imported lazily, only for `model.encoder` other than `unet`, so the default
U-Net never imports timm or torchvision.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

# Kept alive for the life of the process: dropping the Library object would remove the
# schemas it defined.
_LIBRARY: torch.library.Library | None = None
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _torchvision_extension_loads() -> bool:
    """Whether torchvision's `_C` extension loads, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to work around (timm's import will say what is missing)
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
    except OSError:  # e.g. "undefined symbol" / libtorch_cuda.so not found: a CUDA build beside a CPU torch
        return False
    return True


def _declare_missing_schemas() -> None:
    global _LIBRARY
    if _LIBRARY is not None or "torchvision" in sys.modules or _torchvision_extension_loads():
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _LIBRARY.define(schema)


def import_timm() -> ModuleType:
    """The `timm` module, imported after the torchvision workaround above."""
    _declare_missing_schemas()
    import timm

    return timm
