"""What every stage entry point shares: params, logging, the repository root and clean errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config import Params, ParamsError, load_params
from pipeline.errors import PipelineError
from pipeline.logs import setup_logging

log = logging.getLogger("pipeline")


def run_stage(name: str, run: Callable[[Params, Path], object], params_path: str = "params.yaml") -> None:
    """Runs a stage's core, `run(params, root)`, on params.yaml; user-facing errors become one line and exit 1.

    Args:
        name: the DVC stage name, for log lines.
        run: the stage's core in `pipeline` (e.g. `pipeline.training.train.run`).
        params_path: the params file (DVC runs stages from the repository root, which
            is also the root every `paths.*` is relative to).
    """
    setup_logging(name)
    try:
        run(load_params(params_path), Path.cwd())
    except (ParamsError, PipelineError) as e:
        log.error("%s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted; outputs written so far are complete, partial ones were removed")
        sys.exit(130)
