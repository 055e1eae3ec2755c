"""Device choice and DistributedDataParallel plumbing.

`torchrun --nproc_per_node N -m stages.train` sets RANK/WORLD_SIZE/LOCAL_RANK; a plain
`python -m stages.train` has none and runs as a world of one, through the same code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.device import pick_device
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files, logs progress and talks to the tracker."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1


def env_context() -> DistContext:
    """The rank layout torchrun put in the environment (a world of one without it)."""
    return DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`train.device` to a torch device (see `pipeline.device.pick_device`); CUDA gets this rank's GPU.

    Raises:
        PipelineError: a device was named explicitly but is not available.
    """
    device = pick_device(name, key="params: train.device")
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def init_distributed(ctx: DistContext, device: torch.device) -> None:
    """Joins the process group when launched by torchrun: nccl on CUDA, gloo otherwise."""
    if not ctx.distributed or dist.is_initialized():
        return
    if device.type == "mps":
        raise PipelineError("train: multi-process training needs CUDA or the CPU; run MPS with one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    log.info("rank %d of %d joined the %s process group", ctx.rank, ctx.world_size, backend)


def shutdown_distributed() -> None:
    """Leaves the process group, if any (safe to call twice)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(t: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """Reduces a tensor over ranks in place with `op` ("sum" or "min"); identity for a world of one."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return t


def barrier(ctx: DistContext) -> None:
    """Waits for every rank (no-op for a world of one)."""
    if ctx.distributed:
        dist.barrier()
