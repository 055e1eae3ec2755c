"""The pipeline's metric names -> MLflow metric keys grouped by section: the one mapping.

MLflow's UI folds metrics into collapsible groups by the part of the key before the
first `/`. `train_log.tsv` and `metrics.json` keep their names (`dvc exp show` and
`dvc plots` read them); only what is sent to MLflow is renamed, here:

| pipeline name                          | MLflow key                                    |
| -------------------------------------- | --------------------------------------------- |
| `train_loss`, `lr`, `images_per_s`     | `train/loss`, `train/lr`, `train/images_per_s` |
| `seconds` (of the epoch)               | `train/epoch_seconds`                         |
| `val_loss`, `val_<metric>`             | `val/loss`, `val/<metric>`                    |
| `<metric>` (metrics.json, test split)  | `test/<metric>`                               |
| `baseline_<metric>`                    | `baseline/<metric>`                           |
| (MLflow's own system metrics)          | `system/...`                                  |
"""

from __future__ import annotations

SECTIONS = ("train", "val", "test", "baseline", "system")
# train_log.tsv columns that are not `<section>_<name>`.
_TRAIN_COLUMNS = {"lr": "train/lr", "images_per_s": "train/images_per_s", "seconds": "train/epoch_seconds"}
_PREFIXES = {"train_": "train/", "val_": "val/", "baseline_": "baseline/"}


def mlflow_key(name: str) -> str:
    """The MLflow key of a pipeline metric name (`val_abs_rel` -> `val/abs_rel`); a key with a `/` is kept."""
    if "/" in name:
        return name  # already sectioned (system/..., or a caller's own group)
    if name in _TRAIN_COLUMNS:
        return _TRAIN_COLUMNS[name]
    for prefix, section in _PREFIXES.items():
        if name.startswith(prefix):
            return section + name[len(prefix) :]
    from pipeline.metrics import METRIC_NAMES  # here: importing the package must not import torch

    if name in METRIC_NAMES:
        return f"test/{name}"
    return name
