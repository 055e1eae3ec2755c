"""Helpers of the train tests: processed data for a run folder, checkpoints, train logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.conftest import SIZE
from tests.fixtures_data import make_processed_dir


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
