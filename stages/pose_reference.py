"""Stage `pose_reference`: the pose methods that never read the trained model, scored on the sequences.

    python -m stages.pose_reference

Reads `paths.sequences` and the processed data's summary (the control's input scaling);
writes `paths.pose_reference`. Params: `pose.*`, `model.*`, `preprocess.height/width`,
`sequences.tolerance_s`. Core: `pipeline.pose.reference.run`.
"""

from pipeline.pose.reference import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("pose_reference", run)
