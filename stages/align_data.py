"""Stage `align_data`: the alignment term's training sequences, rendered in rooms of their own.

    python -m stages.align_data

Writes `paths.align_data` (TUM-layout sequences; only a note with `loss.align.weight` 0).
Params: `loss.align`, `preprocess.height`, `preprocess.width`.
Core: `pipeline.sequences.align_data.run`.
"""

from pipeline.sequences.align_data import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("align_data", run)
