"""MLflow tracking behind one small API; MLflow is optional and never fails the pipeline.

    tracker = start_run(params, repo_root)          # train (samples system metrics until it ends)
    tracker.log_metrics_history(rows)               # per-epoch values, step = epoch, as train/... val/...
    tracker.log_splits(params, processed, ("train", "val"))   # dataset inputs
    tracker.log_val_panels(net, val_file, n, epoch)  # depth panels for the UI's image grid
    tracker.log_servable_model(model_pt, name, best_epoch)    # pyfunc logged model, registered
    tracker.write_run_id(params.paths.run_id)       # evaluate and report reopen the run
    tracker = resume_run(params, params.paths.run_id)

`python -m pipeline.tracking` creates the store and experiment up front (before
`dvc queue start -j N`), see `init_store`.
"""

import os

# MLflow 3 phones home with usage telemetry unless told not to; a research pipeline
# should not (and offline machines would only wait on it). A user's own setting wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from pipeline.tracking.redact import redact_uri  # noqa: E402
from pipeline.tracking.runs import read_run_id, resume_run, start_run
from pipeline.tracking.store import init_store, tracking_uri
from pipeline.tracking.tracker import Tracker

__all__ = ["Tracker", "init_store", "read_run_id", "redact_uri", "resume_run", "start_run", "tracking_uri"]
