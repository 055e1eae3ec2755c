"""The geometry of one pyramid level: back-projection, projection, sampling and the warp's Jacobian.

Pixel coordinates are 0-based with pixel k's centre at k (`pipeline.camera`); a level of
stride s whose pixel k is centred on input pixel s k + o has the intrinsics
`level_intrinsics` (o = (s - 1) / 2: `Intrinsics.scaled(W / s, H / s)`). Points are in the OpenCV
camera frame (x right, y down, z forward), metres; depth is z-depth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.camera import Intrinsics

MIN_Z = 1e-3  # metres: a point this close to (or behind) the camera plane does not project


def level_intrinsics(
    camera: Intrinsics, stride: int, device: torch.device | None = None, offset: float | None = None
) -> torch.Tensor:
    """(4,) float32 [fx, fy, cx, cy] of a stride-`stride` level whose pixel k is centred on input pixel s k + offset.

    `offset` None is (s - 1) / 2, a pixel covering [k s, (k + 1) s) (pooling: the U-Net,
    the intensities), where this equals `camera.scaled(W / s, H / s)`; a strided
    convolution with an odd kernel padded (k - 1) / 2 centres pixel k on s k (offset 0:
    timm's ResNets and EfficientNets), which the scaled camera misplaces by (s - 1) / 2
    input pixels. `pipeline.pose.features.level_offsets` measures it per backbone.
    """
    s = float(stride)
    o = (s - 1) / 2 if offset is None else float(offset)
    K = camera
    k = [K.fx / s, K.fy / s, (K.cx - o) / s, (K.cy - o) / s]
    return torch.tensor(k, dtype=torch.float32, device=device)


DEPTH_EDGE_RTOL = 0.15
"""A level pixel whose cell holds depths spread by more than this fraction of the sample is dropped.

An occlusion edge jumps by tens of percent; a floor seen at a grazing angle changes by
~8 % across an 8-pixel cell (3 m away, camera 1.2 m high, fy 260 px at 240x320)."""


def sample_depth(depth: torch.Tensor, stride: int, hw: tuple[int, int], offset: float | None = None) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, 1, h, w) at a level's pixel centres: one input pixel's depth, never a blend.

    Level pixel k takes the input pixel nearest its centre s k + offset (`level_intrinsics`;
    the pixel `pipeline.resample` samples for a pooled grid), so its point lies on a real
    surface; averaging across an occlusion edge would float it between the two, exactly
    where point selection (strongest gradients) looks. The pixel is dropped (0) where it
    has no depth, or its s x s cell spans an edge (spread > `DEPTH_EDGE_RTOL` of the depth).
    Cells beyond the frame (a backbone's padding) have no depth.
    """
    h, w = hw
    d = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)  # (B, 1, H, W)
    if stride == 1:
        return F.pad(d[..., :h, :w], (0, w - min(w, d.shape[-1]), 0, h - min(h, d.shape[-2])))
    o = (stride - 1) / 2 if offset is None else offset
    first = int(math.floor(o - stride / 2 + 0.5))  # the cell of pixel k: [s k + first, s k + first + s)
    lo = max(0, -first)
    d = F.pad(d, (lo, 0, lo, 0))[..., lo + first :, lo + first :]  # cell k now starts at s k
    d = F.pad(d, (0, max(0, w * stride - d.shape[-1]), 0, max(0, h * stride - d.shape[-2])))
    d = d[..., : h * stride, : w * stride]  # (B, 1, h s, w s)
    c = int(math.floor(o + 0.5)) - first  # the centre's place in its cell
    centre = d[..., c::stride, c::stride]  # (B, 1, h, w)
    big = F.max_pool2d(d, stride)
    small = -F.max_pool2d(torch.where(d > 0, -d, torch.full_like(d, -float("inf"))), stride)
    edge = (big - small) > DEPTH_EDGE_RTOL * centre
    return torch.where(edge, torch.zeros_like(centre), centre)  # a centre without depth is 0 already


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


def sample(feat: torch.Tensor, uv: torch.Tensor, border: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of (B, C, h, w) maps at (B, N, 2) pixel coordinates -> (B, C, N), inside (B, N).

    `align_corners=True` maps -1 and 1 to the centres of the corner pixels, i.e. pixel k's
    centre at k, the intrinsics' convention. Points outside [b, w-1-b] x [b, h-1-b] with
    b = `border` are not inside (their samples would mix in the zero padding, or for CNN
    features, the border's own padding effects).
    """
    _, _, h, w = feat.shape
    u, v = uv[..., 0], uv[..., 1]
    b = border
    inside = (u >= b) & (u <= w - 1 - b) & (v >= b) & (v <= h - 1 - b)
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], dim=-1)  # (B, N, 2)
    out = F.grid_sample(feat, grid[:, :, None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[..., 0], inside  # (B, C, N): channels first, as the solver keeps residuals


def image_gradient(feat: torch.Tensor, border: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Central differences of (B, C, h, w) maps -> d/du, d/dv as (B, C, h w) each, and the (h w,) interior mask.

    The border row and column have no central difference (0 there); they, and `border`
    more rows and columns, are masked out.
    """
    _, _, h, w = feat.shape
    gu = F.pad((feat[..., :, 2:] - feat[..., :, :-2]) / 2, (1, 1, 0, 0))  # (B, C, h, w)
    gv = F.pad((feat[..., 2:, :] - feat[..., :-2, :]) / 2, (0, 0, 1, 1))
    interior = torch.zeros(h, w, dtype=torch.bool, device=feat.device)
    m = 1 + border
    interior[m : h - m, m : w - m] = True
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
