"""Tiny training set-ups shared by the train tests: params.yaml shrunk to a CPU-second run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import yaml

from pipeline.config import Params, params_from_dict
from tests.fixtures_data import make_processed_dir

REPO = Path(__file__).resolve().parents[1]
SIZE = (32, 48)  # divisible by 2**depth for depth 2


def tiny_raw(**sections: dict[str, Any]) -> dict[str, Any]:
    """params.yaml as a dict with a tiny model, 2 epochs of batch 4, MLflow off; `sections` override keys."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["preprocess"].update(height=SIZE[0], width=SIZE[1])
    raw["model"].update(base_channels=4, depth=2)
    raw["train"].update(epochs=2, batch_size=4, warmup_epochs=1, device="cpu")
    raw["mlflow"]["enabled"] = False
    for name, values in sections.items():
        raw[name] = {**copy.deepcopy(raw.get(name, {})), **values}
    return raw


def tiny_params(**sections: dict[str, Any]) -> Params:
    """Validated `Params` from `tiny_raw`."""
    return params_from_dict(tiny_raw(**sections))


def make_root(root: Path, n_train: int = 8, n_val: int = 4) -> Path:
    """A run folder with processed data at the default `paths.processed_dir`."""
    make_processed_dir(root / "data" / "processed", n_train=n_train, n_val=n_val, n_test=2, size=SIZE)
    return root


def load_last(root: Path) -> dict[str, Any]:
    """The resume checkpoint, loaded the safe way (fails if it holds anything but plain types/tensors)."""
    return torch.load(root / "models" / "checkpoints" / "last.pt", weights_only=True)


def load_best_state(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "models" / "model.pt", weights_only=True)["state_dict"]


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-for-bit equality of two state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


TIMING = ("images_per_s", "seconds")


def without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
