"""`python -m pipeline.tracking [params.yaml] [--ui-url URL]`: create the MLflow store and experiment once.

Run it before starting parallel experiments (`dvc queue start -j 2`), so that no two
runs create a fresh store at the same moment. Prints the experiment id (and, with
`--ui-url`, the address of its runs table in the UI, as `make mlflow-ui` does); exits 0
even when the store is unusable (a warning says why), since MLflow is optional.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.config import ParamsError, load_params
from pipeline.logs import setup_logging
from pipeline.tracking.redact import redact_uri
from pipeline.tracking.store import init_store, tracking_uri


def runs_table_url(ui_url: str, experiment_id: str) -> str:
    """The experiment's runs table in the UI's model-training view.

    MLflow 3's UI routes in the URL fragment; `workflowType=machine_learning` picks the
    model-training side bar over the GenAI one, whichever the browser used last.
    """
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def main(argv: list[str]) -> int:
    """Initialises the store for the params file (default params.yaml); prints the UI's URL if asked."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.tracking", description=__doc__.split("\n")[0])
    ap.add_argument("params", nargs="?", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--ui-url", help="the MLflow UI's address, e.g. http://127.0.0.1:5000: print the runs table's URL")
    args = ap.parse_args(argv)
    setup_logging("mlflow-init")
    try:
        params = load_params(args.params)
    except ParamsError as e:
        logging.getLogger("pipeline").error("%s", e)
        return 1
    experiment_id = init_store(params)
    if experiment_id is not None:
        print(f"MLflow experiment '{params.mlflow.experiment}' (id {experiment_id}) at {redact_uri(tracking_uri())}")
        if args.ui_url:
            print(f"Runs table (model training): {runs_table_url(args.ui_url, experiment_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
