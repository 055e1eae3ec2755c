"""Stage `train`: the U-Net on the processed train split, best epoch by validation.

    python -m stages.train                                  # one process (CUDA, MPS or CPU)
    torchrun --nproc_per_node N -m stages.train             # N GPUs, DistributedDataParallel

Reads `paths.processed_dir` (train.h5, val.h5, summary.json); writes `paths.model`
(best epoch by `train.best_metric`), `paths.train_log` (one row per epoch),
`paths.run_id` (the MLflow run evaluate and report add to) and the resume checkpoint
`<paths.models_dir>/checkpoints/last.pt`. An interrupted run started again with the
same params resumes from the last finished epoch. Params: `model`, `loss`, `train`,
`data.source`, `mlflow`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.config import Params
from pipeline.train import train
from pipeline.train.distributed import env_context
from stages._common import run_stage


def run(params: Params) -> dict[str, Any]:
    """Trains; rank 0 also opens the MLflow run and writes `paths.run_id`. Returns the metrics."""
    # Outputs go to the working directory: queued and --temp experiments run in a
    # temporary copy while DVC_ROOT still names the user's repo, which only the MLflow
    # store (tracking.start_run resolves it) should point at.
    root = Path(".")
    if not env_context().is_main:  # under torchrun only rank 0 tracks, writes and logs progress
        logging.getLogger().setLevel(logging.WARNING)
        return train(params, root)
    # The tracker ends the MLflow run as FINISHED, FAILED or KILLED (Ctrl-C) on exit.
    with tracking.start_run(params, root) as tracker:
        result = train(params, root, tracker)
        tracker.log_model(root / params.paths.model)  # state dict + config: loads at any image size
        tracker.write_run_id(root / params.paths.run_id)
    return result


def main() -> None:
    """`python -m stages.train`."""
    run_stage("train", run)


if __name__ == "__main__":
    main()
