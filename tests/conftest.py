"""Shared test set-up: params.yaml shrunk to CPU seconds, and the CUDA marker.

`shrunk_params()` is the one "load params.yaml and tweak it" of the suite (fixture:
`params`); tests change what they exercise with sections of overrides,
`shrunk_params(train={"epochs": 3})`, which are validated like params.yaml itself.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import ModelParams, Params, params_from_dict

REPO = Path(__file__).resolve().parents[1]
SIZE = (32, 48)  # training resolution of the shrunk params: divisible by 2**depth for depth 2

# What makes the pipeline run in CPU seconds; everything else is params.yaml's own value.
SHRUNK: dict[str, dict[str, Any]] = {
    "data": {"source": "synthetic"},
    "preprocess": {"height": SIZE[0], "width": SIZE[1]},
    "model": {"base_channels": 4, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4, "warmup_epochs": 1, "device": "cpu"},
    "eval": {"n_examples": 2},
    "mlflow": {"enabled": False},  # tests that track point MLFLOW_TRACKING_URI at tmp_path and turn it on
    # Two rendered 8-frame sequences at 48x64: well under a second, never the TUM download.
    "sequences": {
        "source": "synthetic",
        "synthetic": {"n": 2, "frames": 8, "fps": 30.0, "height": 48, "width": 64, "seed": 0},
    },
    # Every variant and both baselines, on 7 + 6 pairs a sequence: a few CPU seconds.
    "pose": {"gaps": [1, 2], "batch_size": 8, "device": "cpu"},
}


def repo_raw() -> dict[str, Any]:
    """The repository's params.yaml as a nested dict."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def shrunk_raw(**sections: dict[str, Any]) -> dict[str, Any]:
    """params.yaml with `SHRUNK` applied, then `sections` (e.g. `train={"lr": 0.01}`) on top."""
    raw = repo_raw()
    for overrides in (SHRUNK, sections):
        for name, values in overrides.items():
            raw[name] = {**copy.deepcopy(raw[name]), **values}
    return raw


def shrunk_params(**sections: dict[str, Any]) -> Params:
    """Validated `Params` from `shrunk_raw`."""
    return params_from_dict(shrunk_raw(**sections))


def write_params(root: Path, raw: dict[str, Any]) -> Path:
    """Writes `raw` as `root/params.yaml` (for stages run as subprocesses there)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture()
def params() -> Params:
    """The shrunk params (see `SHRUNK`)."""
    return shrunk_params()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables but no experiment: copying it skips ~2 s of migrations per store."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips `@pytest.mark.cuda` tests, with the reason, where no CUDA GPU is visible."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def model_params(**overrides: Any) -> ModelParams:
    """The shrunk `model` section (4 channels, depth 2) with `overrides`."""
    return shrunk_params(model=overrides).model
