"""The one seeding helper (python, numpy, torch) and the CUDA determinism switch."""

from __future__ import annotations

import hashlib
import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seeds python's `random`, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds all CUDA devices


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, e.g. (train.seed, epoch, rank).

    Hashing rather than adding keeps (seed=1, epoch=0) and (seed=0, epoch=1) apart.
    """
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Makes CUDA kernels deterministic on request, else lets cuDNN pick the fastest ones.

    The CPU path is deterministic for a fixed thread count without any switch.
    `CUBLAS_WORKSPACE_CONFIG` must be set before cuBLAS initialises, so call this
    before the model touches the GPU.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        log.info("deterministic CUDA algorithms on (slower)")
    else:
        # Fixed input sizes: cuDNN's autotuner pays off after the first step.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def reseed_epoch(seed: int, epoch: int, rank: int, gens: dict[str, torch.Generator]) -> None:
    """Per-epoch seeds from (train.seed, epoch, rank) for the `shuffle` and `augment` generators and torch.

    This is what makes a resumed run match an uninterrupted one on every rank: only
    rank 0 writes the checkpoint, so the other ranks' RNG states could not be restored.
    Every rank shuffles alike (each then takes its own shard); augmentation and dropout
    differ per rank.
    """
    gens["shuffle"].manual_seed(derive_seed(seed, epoch))
    gens["augment"].manual_seed(derive_seed(seed, epoch, rank, 1))
    torch.manual_seed(derive_seed(seed, epoch, rank, 2))  # dropout (CPU and every CUDA device)
