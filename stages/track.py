"""Stage `track`: the experiment's MLflow run made whole (what stages restored from DVC's cache did not log).

    python -m stages.track

Always runs (DVC's `always_changed`), last. Reads the run-id file, `paths.metrics`,
`paths.pose_table`, the report; writes nothing but the MLflow run. Params: `mlflow.*`.
Core: `pipeline.tracking.track.run`.
"""

from pipeline.tracking.track import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("track", run)
