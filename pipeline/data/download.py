"""The download stage: `run(params, root)` puts the raw data in `data/raw/`.

`data.source: nyudv2` fetches the labeled file and its split (resumable, retried, SHA-256
verified, from the first of `data.url`'s mirrors that delivers them, see `fetch`);
`data.source: synthetic` renders procedural scenes in the same layout, offline;
`data.source: folder` fetches and unpacks `data.folder.url`'s archive when one is set
(`archive`), plus the labeled file and split when the test split comes from them
(`data.folder.test_from: labeled`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import DataParams, Params
from pipeline.data.archive import fetch_and_unpack
from pipeline.data.fetch import fetch_from_mirrors
from pipeline.io import write_text_atomic

log = logging.getLogger(__name__)

# DVC has no optional outputs (treeverse/dvc#4410): a stage must write every `outs` entry.
# A folder run that takes its test split from its own list needs neither NYU file, so the
# stage writes this note in their place (never over a real file: one already there is kept).
PLACEHOLDER = (
    "Not NYUDv2 data: a placeholder the download stage writes because data.source is folder and "
    "data.folder.test_from is list, which need no labeled file (DVC requires every stage output to exist).\n"
)


def _fetch_labeled(data: DataParams, labeled: Path, splits: Path) -> None:
    # The small splits file first: a wrong URL or a dead network fails in seconds,
    # not after 3 GB. It has no size param (0 = unknown); its SHA-256 pins it.
    fetch_from_mirrors(data.splits_urls, splits, sha256=data.splits_sha256, retries=data.retries)
    fetch_from_mirrors(data.urls, labeled, sha256=data.sha256, size=data.size, retries=data.retries)


def _placeholders(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            write_text_atomic(path, PLACEHOLDER)
            log.info("%s: placeholder written (data.folder.test_from is list: no labeled file needed)", path)


def run(params: Params, root: Path) -> dict[str, Path]:
    """Writes `paths.labeled` and `paths.splits` (and for the folder source its unpacked archive) under `root`.

    Raises:
        PipelineError: a download failed or did not verify (nothing unverified is left
            at the output paths, and a good file already there is kept), or an archive
            could not be unpacked safely.
    """
    data, paths = params.data, params.paths.resolve(root)
    if data.source == "synthetic":
        # Imported here so the real download never needs the scene renderer.
        from pipeline.synthetic.dataset import write_synthetic_nyu

        write_synthetic_nyu(paths.labeled, paths.splits, data.synthetic)
    elif data.source == "nyudv2":
        _fetch_labeled(data, paths.labeled, paths.splits)
    else:
        folder = data.folder
        if folder.urls:
            fetch_and_unpack(folder.urls, folder.sha256, Path(root) / folder.unpack_dir, data.retries)
        if folder.test_from == "labeled":
            _fetch_labeled(data, paths.labeled, paths.splits)
        else:
            _placeholders(paths.labeled, paths.splits)
    return {"labeled": paths.labeled, "splits": paths.splits}
