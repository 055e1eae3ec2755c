"""Stage `preprocess`: raw NYUDv2 .mat files -> data/processed/{train,val,test}.h5 + summary.json.

    python -m stages.preprocess

Reads `paths.labeled`, `paths.splits`; writes `paths.processed_dir` (replaced as a
whole, only on success). Params: `preprocess.*`, `data.source`.
"""

from __future__ import annotations

import logging

from pipeline.config import Params
from pipeline.data.preprocess import preprocess
from stages._common import run_stage

log = logging.getLogger("pipeline")


def body(params: Params) -> dict:
    """Runs the preprocess core on the paths and params from params.yaml."""
    p = params.paths
    summary = preprocess(p.labeled, p.splits, p.processed_dir, params.preprocess, params.data.source)
    log.info(
        "counts %s; rgb mean %s std %s; depth %.2f..%.2f m",
        summary["counts"],
        [round(v, 4) for v in summary["rgb_mean"]],
        [round(v, 4) for v in summary["rgb_std"]],
        summary["depth_min"],
        summary["depth_max"],
    )
    return summary


def main() -> None:
    """Entry point for `python -m stages.preprocess` (DVC's cmd)."""
    run_stage("preprocess", body)


if __name__ == "__main__":
    main()
