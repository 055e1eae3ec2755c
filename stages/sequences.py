"""Stage `sequences`: RGB-D sequences with ground-truth camera motion, in TUM RGB-D's layout.

    python -m stages.sequences

Writes `paths.sequences` (one sub-folder per sequence). Params: `sequences.*`.
Core: `pipeline.sequences.sequences.run`.
"""

from pipeline.sequences.sequences import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("sequences", run)
