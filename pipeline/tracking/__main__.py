"""`python -m pipeline.tracking [params.yaml]`: create the MLflow store and experiment once.

Run it before starting parallel experiments (`dvc queue start -j 2`), so that no two
runs create a fresh store at the same moment. Prints the experiment id; exits 0 even
when the store is unusable (a warning says why), since MLflow is optional.
"""

from __future__ import annotations

import logging
import sys

from pipeline.config import ParamsError, load_params
from pipeline.logs import setup_logging
from pipeline.tracking.redact import redact_uri
from pipeline.tracking.store import init_store, tracking_uri


def main(argv: list[str]) -> int:
    """Initialises the store for the params file in argv[0] (default params.yaml)."""
    setup_logging("mlflow-init")
    try:
        params = load_params(argv[0] if argv else "params.yaml")
    except ParamsError as e:
        logging.getLogger("pipeline").error("%s", e)
        return 1
    experiment_id = init_store(params)
    if experiment_id is not None:
        print(f"MLflow experiment '{params.mlflow.experiment}' (id {experiment_id}) at {redact_uri(tracking_uri())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
