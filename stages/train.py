"""Stage `train`: the U-Net on the processed train split, best epoch by validation.

    python -m stages.train                                  # one process (CUDA, MPS or CPU)
    torchrun --nproc_per_node N -m stages.train             # N GPUs, DistributedDataParallel

Reads `paths.processed_dir`; writes `paths.model`, `paths.train_log`, `paths.run_id`
and `paths.resume_checkpoint`. Params: `model`, `loss`, `train`, the training size,
eval's crop and depth range (validation scores what the test scores), `data.source`,
`mlflow`. Core: `pipeline.training.train.run`.
"""

from pipeline.training.train import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("train", run)
