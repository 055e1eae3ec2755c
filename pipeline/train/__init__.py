"""Training: `train(params, repo_root, tracker) -> metrics` (see `engine`)."""

from pipeline.train.engine import train

__all__ = ["train"]
