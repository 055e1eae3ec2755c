"""The one logging set-up of every command line (the stages, `predict`, `python -m pipeline.tracking`)."""

from __future__ import annotations

import logging


def setup_logging(name: str, level: int = logging.INFO) -> None:
    """`HH:MM:SS <name> LEVEL message` on stderr, for the root logger.

    Args:
        name: the command (a stage name, `predict`, `mlflow-init`), shown on every line.
        level: the root logger's level.
    """
    logging.basicConfig(level=level, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
