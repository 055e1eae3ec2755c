"""Optimiser and learning-rate schedule from `params.train`."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.config import TrainParams

SGD_MOMENTUM = 0.9  # the usual heavy-ball value; Nesterov for the slightly better-behaved variant


def _decay_groups(params: list[nn.Parameter], lr: float, weight_decay: float) -> list[dict]:
    """Two param groups at `lr`: conv/linear weights with decay, 1-D tensors without."""
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": lr},
    ]


def build_optimizer(
    model: nn.Module, tp: TrainParams, device: torch.device, encoder: list[nn.Parameter] | None = None
) -> torch.optim.Optimizer:
    """AdamW or SGD at `train.lr`, with weight decay on conv weights only.

    Biases and norm scales (1-D tensors) get no decay: shrinking them towards 0 fights
    normalisation rather than regularising (as nanoGPT and timm do). The parameters in
    `encoder` (a pretrained backbone's) train at `train.lr * train.encoder_lr_mult`, in
    two more groups; the schedule scales every group's own peak alike.
    """
    in_encoder = {id(p) for p in encoder or []}
    params = [p for p in model.parameters() if p.requires_grad]
    # Group 0 is the decoder's (train.lr): the one the train log reads the learning rate from.
    groups = _decay_groups([p for p in params if id(p) not in in_encoder], tp.lr, tp.weight_decay)
    pretrained = [p for p in params if id(p) in in_encoder]
    if pretrained:  # none for the plain U-Net: its two groups, as before
        groups += _decay_groups(pretrained, tp.lr * tp.encoder_lr_mult, tp.weight_decay)
    if tp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tp.lr, momentum=SGD_MOMENTUM, nesterov=True)
    # The fused CUDA kernel updates every tensor in one launch.
    return torch.optim.AdamW(groups, lr=tp.lr, fused=device.type == "cuda")


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of `train.lr` at optimiser step `step` (0-based).

    Linear warm-up from lr/warmup_steps to lr (early Adam steps on a fresh network
    are large and noisy), then constant or a half-cosine decay to 0 at the last step.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, tp: TrainParams, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule (stepped after every optimiser step, not every epoch)."""
    warmup = tp.warmup_epochs * steps_per_epoch
    total = tp.epochs * steps_per_epoch

    # A plain function, so LambdaLR's state_dict holds no callable (weights_only loads it).
    def factor(step: int) -> float:
        """The LR multiplier at optimiser step `step`."""
        return lr_factor(step, warmup, total, tp.schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
