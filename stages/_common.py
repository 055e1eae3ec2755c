"""What every stage entry point shares: params loading, logging set-up and clean errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from pipeline.config import Params, ParamsError, load_params
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


def run_stage(name: str, body: Callable[[Params], object], params_path: str = "params.yaml") -> None:
    """Runs a stage body with validated params; user-facing errors become one line and exit 1.

    Args:
        name: the DVC stage name, for log lines.
        body: the stage's work, given the parsed params.
        params_path: the params file (DVC runs stages from the repo root).
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        body(load_params(params_path))
    except (ParamsError, PipelineError) as e:
        log.error("%s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted; outputs written so far are complete, partial ones were removed")
        sys.exit(130)
