"""The geometry of one pyramid level: back-projection, projection, sampling and the warp's Jacobian.

Pixel coordinates are 0-based with pixel k's centre at k (`pipeline.camera`); a level of
stride s has the intrinsics `Intrinsics.scaled(W / s, H / s)`. Points are in the OpenCV
camera frame (x right, y down, z forward), metres; depth is z-depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.camera import Intrinsics

MIN_Z = 1e-3  # metres: a point this close to (or behind) the camera plane does not project


def level_intrinsics(camera: Intrinsics, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """(4,) float32 [fx, fy, cx, cy] of a stride-`stride` level: `camera.scaled(W / s, H / s)` written out.

    Written out rather than called because W / s need not be whole (a backbone's padded maps).
    """
    s = float(stride)
    K = camera
    k = [K.fx / s, K.fy / s, (K.cx + 0.5) / s - 0.5, (K.cy + 0.5) / s - 0.5]
    return torch.tensor(k, dtype=torch.float32, device=device)


def pool_depth(depth: torch.Tensor, stride: int, hw: tuple[int, int], min_valid: float = 0.5) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, 1, h, w): the mean of the valid depths under each level pixel, 0 where invalid.

    A level pixel is valid where at least `min_valid` of its stride x stride input pixels
    have depth (> 0 and finite). The depth is cropped or zero-padded to h*s x w*s first,
    as the features were (a backbone pads its input at the bottom and right).
    """
    h, w = hw
    d = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)  # (B, 1, H, W)
    d = d[..., : h * stride, : w * stride]
    d = F.pad(d, (0, w * stride - d.shape[-1], 0, h * stride - d.shape[-2]))  # (B, 1, h s, w s)
    if stride == 1:
        return d
    ok = (d > 0).float()
    total, count = F.avg_pool2d(d, stride), F.avg_pool2d(ok, stride)  # (B, 1, h, w) each
    return torch.where(count >= min_valid, total / count.clamp_min(1e-6), torch.zeros_like(total))


def back_project(depth: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, h, w) z-depth -> points (B, h w, 3) in row-major pixel order, valid (B, h w) where depth > 0."""
    B, _, h, w = depth.shape
    v, u = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=torch.float32),
        torch.arange(w, device=depth.device, dtype=torch.float32),
        indexing="ij",
    )
    z = depth.reshape(B, h * w)  # (B, N)
    x = (u.reshape(1, -1) - k[2]) / k[0] * z
    y = (v.reshape(1, -1) - k[3]) / k[1] * z
    return torch.stack([x, y, z], dim=-1), z > 0  # (B, N, 3), (B, N)


def project(points: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 3) points -> pixel coordinates (B, N, 2) (u, v), and (B, N) whether they lie in front (z > MIN_Z)."""
    X = points  # (B, N, 3)
    z = X[..., 2]
    front = z > MIN_Z
    zs = torch.where(front, z, torch.ones_like(z))  # keeps the division finite; masked anyway
    return torch.stack([k[0] * X[..., 0] / zs + k[2], k[1] * X[..., 1] / zs + k[3]], dim=-1), front


def sample(feat: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of (B, C, h, w) maps at (B, N, 2) pixel coordinates -> (B, C, N), inside (B, N).

    `align_corners=True` maps -1 and 1 to the centres of the corner pixels, i.e. pixel k's
    centre at k, the intrinsics' convention. Points outside [0, w-1] x [0, h-1] are not
    inside (their samples would mix in the zero padding).
    """
    _, _, h, w = feat.shape
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], dim=-1)  # (B, N, 2)
    out = F.grid_sample(feat, grid[:, :, None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[..., 0], inside  # (B, C, N): channels first, as the solver keeps residuals


def image_gradient(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Central differences of (B, C, h, w) maps -> d/du, d/dv as (B, C, h w) each, and the (h w,) interior mask.

    The border row and column have no central difference (0 there); they are masked out.
    """
    _, _, h, w = feat.shape
    gu = F.pad((feat[..., :, 2:] - feat[..., :, :-2]) / 2, (1, 1, 0, 0))  # (B, C, h, w)
    gv = F.pad((feat[..., 2:, :] - feat[..., :-2, :]) / 2, (0, 0, 1, 1))
    interior = torch.zeros(h, w, dtype=torch.bool, device=feat.device)
    interior[1:-1, 1:-1] = True
    return gu.flatten(2), gv.flatten(2), interior.flatten()


def warp_jacobian(points: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The Jacobian d pi(exp(xi) X) / d xi at xi = 0, xi = (v, w): (B, N, 3) points X -> (B, N, 2, 6).

    The chain of the projection's Jacobian [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]
    and the SE(3) generators at the identity, d(exp(xi) X)/d xi = [I | -[X]_x].
    """
    x, y, z = points.unbind(-1)
    iz = 1.0 / torch.where(z.abs() > MIN_Z, z, torch.ones_like(z))
    fx, fy = k[0], k[1]
    zero = torch.zeros_like(x)
    # Rows: d u / d xi and d v / d xi; columns: translation (3), then rotation (3).
    du = torch.stack([fx * iz, zero, -fx * x * iz**2, -fx * x * y * iz**2, fx * (1 + x**2 * iz**2), -fx * y * iz], -1)
    dv = torch.stack([zero, fy * iz, -fy * y * iz**2, -fy * (1 + y**2 * iz**2), fy * x * y * iz**2, fy * x * iz], -1)
    return torch.stack([du, dv], dim=-2)  # (B, N, 2, 6)


def feature_jacobian(gu: torch.Tensor, gv: torch.Tensor, jw: torch.Tensor) -> torch.Tensor:
    """The chain grad F . d pi(exp(xi) X) / d xi: (B, C, N) gradients d/du, d/dv and (B, N, 2, 6) -> (B, C, N, 6)."""
    return gu[..., None] * jw[:, None, :, 0] + gv[..., None] * jw[:, None, :, 1]
