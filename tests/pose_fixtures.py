"""A pose-stage setting in seconds: rendered synthetic sequences and an untrained depth checkpoint.

Training is not needed to exercise the stage: the checkpoint's architecture, input
normalisation and training resolution are all it reads. Frames are rendered at the
checkpoint's resolution, 96x128 (4:3), large enough for photometric alignment to work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.config import Params, to_yaml_dict
from pipeline.model import build_model
from pipeline.model.serialize import save_model
from pipeline.pose.pose import run as run_model_variants
from pipeline.pose.reference import run as run_reference
from pipeline.sequences.sequences import run as write_sequences
from tests.conftest import shrunk_params

HW = (96, 128)


def pose_params(**pose: Any) -> Params:
    """Shrunk params: 96x128 frames and model input, one 8-frame sequence (7 with depth), gaps 1 and 3."""
    synthetic = {"n": 1, "frames": 8, "fps": 30.0, "height": HW[0], "width": HW[1], "seed": 0}
    return shrunk_params(
        preprocess={"height": HW[0], "width": HW[1]},
        model={"base_channels": 4, "depth": 3},
        sequences={"synthetic": synthetic},
        pose={"gaps": [1, 3], "batch_size": 16, "device": "cpu", **pose},
    )


RGB_MEAN, RGB_STD = (0.45, 0.42, 0.40), (0.25, 0.25, 0.25)


def pose_setting(root: Path, params: Params) -> None:
    """Writes sequences, an untrained checkpoint (seed 1: unlike the control's 0) and the processed summary."""
    write_sequences(params, root)
    torch.manual_seed(1)
    net = build_model(params.model, RGB_MEAN, RGB_STD)
    save_model(root / params.paths.model, net, {"params": to_yaml_dict(params), "epoch": 1})
    summary = root / params.paths.processed_dir / "summary.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"rgb_mean": list(RGB_MEAN), "rgb_std": list(RGB_STD)}))


def run_pose(params: Params, root: Path) -> dict[str, Any]:
    """Both pose stages, as DVC runs them: pose_reference, then pose; returns pose's full table."""
    run_reference(params, root)
    return run_model_variants(params, root)
