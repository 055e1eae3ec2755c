"""Stage `preprocess`: raw NYUDv2 .mat files -> data/processed/{train,val,test}.h5 + summary.json.

    python -m stages.preprocess

Reads `paths.labeled`, `paths.splits` (or, for `data.source: folder`, the files its
lists name); writes `paths.processed_dir` (replaced as a whole, only on success). Params:
`preprocess.*`, `data.source`, `data.folder.*`. Core: `pipeline.data.preprocess.run`.
"""

from pipeline.data.preprocess import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("preprocess", run)
