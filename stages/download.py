"""DVC stage `download`: puts the labeled NYUDv2 file and its train/test split in data/raw/.

`data.source: nyudv2` fetches both files (resumable, retried, SHA-256 verified);
`data.source: synthetic` writes procedural scenes in the same layout, offline.

    python -m stages.download
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.data.download import fetch
from stages._common import run_stage


def run(params: Params) -> dict[str, str]:
    """Writes `paths.labeled` and `paths.splits`; returns them by name."""
    data = params.data
    labeled, splits = Path(params.paths.labeled), Path(params.paths.splits)
    if data.source == "synthetic":
        # Imported here so the real download never needs the scene renderer.
        from pipeline.synthetic.dataset import write_synthetic_nyu

        write_synthetic_nyu(labeled, splits, data.synthetic)
    else:
        # The small splits file first: a wrong URL or a dead network fails in seconds,
        # not after 3 GB. It has no size param (0 = unknown); its SHA-256 pins it.
        fetch(data.splits_url, splits, sha256=data.splits_sha256, retries=data.retries)
        fetch(data.url, labeled, sha256=data.sha256, size=data.size, retries=data.retries)
    return {"labeled": str(labeled), "splits": str(splits)}


def main() -> None:
    run_stage("download", run)


if __name__ == "__main__":
    main()
