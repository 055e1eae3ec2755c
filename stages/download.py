"""Stage `download`: the labeled NYUDv2 file and its train/test split into data/raw/.

    python -m stages.download

Writes `paths.labeled`, `paths.splits` (and for `data.source: folder` unpacks its archive
into `data.folder.unpack_dir`). Params: `data.*`. Core: `pipeline.data.download.run`.
"""

from pipeline.data.download import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("download", run)
