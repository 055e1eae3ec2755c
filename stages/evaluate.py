"""Stage `evaluate`: the standard NYUDv2 test protocol on the trained model.

    python -m stages.evaluate

Reads `paths.model`, `paths.processed_dir` (test.h5; train.h5 for the constant
baseline's median depth) and `paths.run_id`; writes `paths.metrics`, `per_image`,
`per_scene_type`, `error_by_depth` and `predictions`, and logs the test metrics to the
MLflow run training opened. Params: `eval.*`, `mlflow.*`. The device is picked
automatically (CUDA, then MPS, then the CPU) and is not a param: it must not change the
numbers beyond bf16 rounding on CUDA.
"""

from __future__ import annotations

from pipeline.config import Params
from pipeline.evaluate import evaluate
from stages._common import run_stage


def body(params: Params) -> dict:
    """Runs the evaluate core on the paths and params from params.yaml."""
    return evaluate(params, device="auto")


def main() -> None:
    """Entry point for `python -m stages.evaluate` (DVC's cmd)."""
    run_stage("evaluate", body)


if __name__ == "__main__":
    main()
