"""Stage `pose`: camera motion from the depth network's features, scored on the sequences.

    python -m stages.pose

Reads `paths.model`, `paths.sequences` and `paths.pose_reference`; writes `paths.pose_table`,
`paths.pose_metrics`, `paths.pose_pairs` and `paths.pose_trajectories`. Params: `pose.*`,
`sequences.tolerance_s`, `mlflow.*`.
Core: `pipeline.pose.pose.run`.
"""

from pipeline.pose.pose import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("pose", run)
