"""The pipeline's metric names -> MLflow metric keys grouped by section: the one mapping.

MLflow's UI folds metrics into collapsible groups by the part of the key before the
first `/`. `train_log.tsv` and `metrics.json` keep their names (`dvc exp show` and
`dvc plots` read them); only what is sent to MLflow is renamed, here:

| pipeline name                          | MLflow key                                    |
| -------------------------------------- | --------------------------------------------- |
| `train_loss`, `lr`, `images_per_s`     | `train/loss`, `train/lr`, `train/images_per_s` |
| `seconds` (of the epoch)               | `train/epoch_seconds`                         |
| `train_align_loss` (loss.align on)     | `train/align_loss`                            |
| `val_loss`, `val_<metric>`             | `val/loss`, `val/<metric>`                    |
| `<metric>` (metrics.json, test split)  | `test/<metric>`                               |
| `baseline_<metric>`                    | `baseline/<metric>`                           |
| (MLflow's own system metrics)          | `system/...`                                  |
| pose table: `<method>` RPE, success, ATE | `pose/<method>/...` (`pose_metrics`)        |
"""

from __future__ import annotations

from typing import Any

SECTIONS = ("train", "val", "test", "baseline", "pose", "system")
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


def evaluation_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json as MLflow metrics: the test metrics (`test/`) and the constant baseline's (`baseline/`)."""
    from pipeline.metrics import METRIC_NAMES

    flat = {k: metrics.get(k) for k in METRIC_NAMES} | {f"baseline_{k}": v for k, v in metrics["baseline"].items()}
    return {k: float(v) for k, v in flat.items() if v is not None}


def pose_metrics(table: dict[str, Any]) -> dict[str, float]:
    """The pose table's headline figures under `pose/<method>/...`: RPE RMSE and success per gap, ATE."""
    out: dict[str, Any] = {}
    for group in ("variants", "baselines"):
        for method, m in table.get(group, {}).items():
            if m.get("available") is False:  # a baseline that could not run here: its table entry says why
                continue
            key = f"pose/{method}"
            for gap, r in m["rpe"].items():
                out[f"{key}/rpe_{gap}_trans_rmse_m"] = r["trans_m"]["rmse"]
                out[f"{key}/rpe_{gap}_rot_rmse_deg"] = r["rot_deg"]["rmse"]
                out[f"{key}/success_{gap}"] = m["success"][gap]
            if m["ate"]:
                out[f"{key}/ate_se3_rmse_m"] = m["ate"]["se3"]["rmse_m"]
                out[f"{key}/ate_sim3_rmse_m"] = m["ate"]["sim3"]["rmse_m"]
    return {k: float(v) for k, v in out.items() if v is not None}
