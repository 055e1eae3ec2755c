"""The download stage: `run(params, root)` puts the labeled file and its split in `data/raw/`.

`data.source: nyudv2` fetches both files (resumable, retried, SHA-256 verified, from
the first of `data.url`'s mirrors that delivers them, see `fetch`); `data.source:
synthetic` renders procedural scenes in the same layout, offline.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.data.fetch import fetch_from_mirrors


def run(params: Params, root: Path) -> dict[str, Path]:
    """Writes `paths.labeled` and `paths.splits` under `root`; returns them by name.

    Raises:
        PipelineError: a download failed or did not verify (nothing unverified is left
            at the output paths, and a good file already there is kept).
    """
    data, paths = params.data, params.paths.resolve(root)
    if data.source == "synthetic":
        # Imported here so the real download never needs the scene renderer.
        from pipeline.synthetic.dataset import write_synthetic_nyu

        write_synthetic_nyu(paths.labeled, paths.splits, data.synthetic)
    else:
        # The small splits file first: a wrong URL or a dead network fails in seconds,
        # not after 3 GB. It has no size param (0 = unknown); its SHA-256 pins it.
        fetch_from_mirrors(data.splits_urls, paths.splits, sha256=data.splits_sha256, retries=data.retries)
        fetch_from_mirrors(data.urls, paths.labeled, sha256=data.sha256, size=data.size, retries=data.retries)
    return {"labeled": paths.labeled, "splits": paths.splits}
