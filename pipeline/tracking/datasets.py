"""The processed splits as MLflow dataset inputs (the runs table's Dataset column).

One input per split a stage reads (train: `train`, `val`; evaluate: `test`), each with
name = `data.source`, digest = the MD5 of the split's HDF5 file, which is the hash DVC
records for that file inside `data/processed` (`md5sum data/processed/train.h5` shows
it), source = where the raw data came from (a URL, a local path, or the synthetic
renderer and its seed) and context = the split. The digest is computed from the file
itself, not read from `dvc.lock`, so it is right without DVC too (`python -m stages.train`,
a stale lock file). Only metadata is logged, never the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Params
from pipeline.data.datasets import split_length
from pipeline.io import md5_file
from pipeline.tracking.redact import redact_uri

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

CONTEXT_TAG = "mlflow.data.context"  # the key mlflow.log_input(context=...) sets


def dataset_source(params: Params) -> tuple[str, dict[str, object]]:
    """(MLflow source type, source dict) of the raw data, in the form of MLflow's own source classes.

    http(s) mirrors give `HTTPDatasetSource`'s {"url"} (credentials stripped); a local path
    or file:// URL gives `LocalArtifactDatasetSource`'s {"uri"}; the synthetic renderer a
    `CodeDatasetSource` tagged with what makes its scenes.
    """
    data = params.data
    if data.source == "synthetic":
        tags = {"generator": "pipeline.synthetic", "seed": str(data.synthetic.seed)}
        return "code", {"tags": {**tags, "n_images": str(data.synthetic.n_images)}}
    url = data.urls[0]
    if url.startswith(("http://", "https://")):
        return "http", {"url": redact_uri(url)}
    return "local", {"uri": url}


def split_input(params: Params, processed_dir: Path, split: str) -> DatasetInput:
    """The dataset input of one processed split (`train`, `val` or `test`).

    Raises:
        OSError: the split file cannot be read (the stage itself fails on it first).
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    path = processed_dir / f"{split}.h5"
    source_type, source = dataset_source(params)
    profile = {"split": split, "images": split_length(path), "file": path.name}
    dataset = Dataset(
        name=params.data.source,
        digest=md5_file(path),
        source_type=source_type,
        source=json.dumps(source),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset=dataset, tags=[InputTag(key=CONTEXT_TAG, value=split)])
