"""Batched SE(3) for the pose solver: kornia's exp/log, plus the few closed forms it lacks as matrices.

Poses are (B, 4, 4) float tensors [R t; 0 1]. Tangent vectors are (B, 6) in kornia's
order xi = (v, w): translation part first (metres), rotation vector second (radians),
so `exp(xi)` is `kornia.geometry.liegroup.Se3.exp(xi).matrix()`. kornia's exp is
branch-free (`torch.where` on the small-angle series), so it runs batched on the CPU and
on CUDA without a host sync and stays finite in float32 at the identity.
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.liegroup import Se3


def exp(xi: torch.Tensor) -> torch.Tensor:
    """(B, 6) tangent vectors (v, w) -> (B, 4, 4) rigid motions."""
    return Se3.exp(xi).matrix()


def log(motion: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) rigid motions -> (B, 6) tangent vectors (v, w), rotation angle in [0, pi]."""
    return Se3.from_matrix(motion).log()


def inverse(motion: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) -> (B, 4, 4) inverse rigid motions: [R^T, -R^T t] (exact, unlike a general inverse)."""
    R, t = motion[..., :3, :3], motion[..., :3, 3:]  # (B, 3, 3), (B, 3, 1)
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(motion)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


def transform(motion: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Applies (B, 4, 4) motions to (B, N, 3) points -> (B, N, 3)."""
    return points @ motion[:, :3, :3].transpose(1, 2) + motion[:, None, :3, 3]


def rotation_angle(motion: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) -> (B,) rotation angle in radians, from the trace (clamped: float32 can stray past +-1)."""
    R = motion[..., :3, :3]
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2
    return torch.arccos(cos.clamp(-1.0, 1.0))


def pose_error(estimate: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative error of estimated against true motions: (translation metres (B,), rotation degrees (B,)).

    The error motion is inv(truth) @ estimate, the same definition as RPE's for one step.
    """
    E = inverse(truth) @ estimate  # (B, 4, 4)
    return E[..., :3, 3].norm(dim=-1), rotation_angle(E) * (180.0 / math.pi)
