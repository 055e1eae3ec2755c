"""Stage `evaluate`: the standard NYUDv2 test protocol on the trained model.

    python -m stages.evaluate

Reads `paths.model`, `paths.processed_dir`, `paths.run_id`; writes `paths.metrics`,
`per_image`, `per_scene_type`, `error_by_depth`, `predictions`. Params: `eval.*`,
`mlflow.*`. Core: `pipeline.evaluation.evaluate.run`.
"""

from pipeline.evaluation.evaluate import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("evaluate", run)
