"""One pyramid level's geometric (depth) term: the source's measured inverse depth against the warped points'.

Photometric alignment sees translation only through parallax, which a mostly rotating
hand-held camera barely makes; the depth images see it directly. DVO-SLAM (Kerl et al.
2013) and Open3D's hybrid RGB-D odometry add a depth residual beside the photometric one.
Here, for a target point X moved by T (Y = T X, projected to u' = pi(Y) in the source),

    r_z = rho_src(u') - 1 / Y_z,   rho = 1 / z,

in inverse depth: a structured-light sensor measures disparity, whose noise is the same
near and far, so one robust scale fits every point (a depth residual's noise grows as z^2).

Its Jacobian is taken at the current motion (forward, not inverse-compositional: r_z
depends on T directly, not only through a sampled map), for the right perturbation
T exp(delta) the solver's update uses (T <- T exp(-xi)):

    d r_z / d Y = rho_u (fx / z, 0, -fx x / z^2) + rho_v (0, fy / z, -fy y / z^2) + (0, 0, 1 / z^2)
    d Y / d delta = R [I | -[X]_x]      ->      J = [b, X x b],   b = R^T (d r_z / d Y)

so J^T W J and J^T W r_z are one (6 x m) @ (m x 6) product a pair and kept step, beside
the photometric term's. The term has its own point set: target pixels with depth on a
regular grid (flat, textureless surfaces constrain depth as well as any; the photometric
points sit on intensity edges, often depth edges, where a depth sample is worthless),
and its own robust scale, which makes it unitless against the photometric one
(`pipeline.pose.solver` weighs the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.pose import se3, warp

VALID_SAMPLE = 0.999
"""A bilinear sample of the source's inverse depth counts only when all four neighbours are valid."""
INVERSE_DEPTH_STEP = 0.0029
"""1/m: a Kinect reads depth in steps of constant inverse depth (its disparity's), measured on TUM's fr1 depth
PNGs: 0.0028-0.0031 from 0.8 to 3.5 m (2 mm of depth at 0.8 m, 35 mm at 3.5 m)."""
MIN_SCALE = 1.345 * INVERSE_DEPTH_STEP / math.sqrt(6)
"""Floor of the term's Huber scale (~1.6e-3 1/m): Huber's 1.345 sigma of the difference of two readings each rounded
to that step (sigma = step / sqrt(6)). Quantised readings of a slowly moving camera are often *equal* (30-60 % of
the pixels of consecutive fr1/rpy depth frames), so at a level's start more than half the residuals can be exactly
0: the scale from their median was then ~0, the term's weight (delta_photo / delta_depth)^2 ~1e9, and it pinned the
pair to standing still. On fr1/rpy dev pairs 95 % of the level starts measure 2.7e-3 or more."""


@dataclass(frozen=True)
class Term:
    """What one level's geometric term holds fixed (B pairs, m points)."""

    X: torch.Tensor  # (B, m, 3) target-frame points
    points: torch.Tensor  # (B, m) the fixed set: target pixels with depth, on the grid
    src: torch.Tensor  # (B, 4, h, w) the source's [rho, d rho / du, d rho / dv, valid]
    k: torch.Tensor  # (4,) level intrinsics

    def take(self, idx: torch.Tensor) -> Term:
        """The pairs `idx` (B',) of this term."""
        return Term(self.X[idx], self.points[idx], self.src[idx], self.k)

    def with_source(self, depth_src: torch.Tensor) -> Term:
        """This term against another source's (B, 1, h, w) level depth: the target's points are reused."""
        return Term(self.X, self.points, source_map(depth_src), self.k)


@dataclass(frozen=True)
class Eval:
    """The term at one motion: residuals r (B, m), in view (B, m), their norms |r|, and what `jacobian` needs.

    The Jacobian itself is built only for the normal equations of a step the solver keeps
    (`jacobian`), not for every step it tries.
    """

    r: torch.Tensor
    inview: torch.Tensor
    e: torch.Tensor
    grad: torch.Tensor  # (B, m, 3) d r / d Y at the moved points, 0 where not in view
    R: torch.Tensor  # (B, 3, 3) the motion's rotation


def source_map(depth: torch.Tensor) -> torch.Tensor:
    """A source's (B, 1, h, w) level depth (`warp.sample_depth`, 0: none) -> (B, 4, h, w) [rho, rho_u, rho_v, valid].

    Central differences of the inverse depth; a pixel is valid where it and its four
    neighbours have depth and neither difference jumps by more than `warp.DEPTH_EDGE_RTOL`
    of its own inverse depth (an occlusion edge has no gradient to follow).
    """
    has = depth > 0
    rho = torch.where(has, 1.0 / depth.clamp_min(warp.MIN_Z), torch.zeros_like(depth))  # (B, 1, h, w)
    gu = F.pad((rho[..., :, 2:] - rho[..., :, :-2]) / 2, (1, 1, 0, 0))
    gv = F.pad((rho[..., 2:, :] - rho[..., :-2, :]) / 2, (0, 0, 1, 1))
    near = F.pad(has.float(), (1, 1, 1, 1))  # neighbours beyond the map have no depth
    around = near[..., 1:-1, :-2] * near[..., 1:-1, 2:] * near[..., :-2, 1:-1] * near[..., 2:, 1:-1]
    smooth = (gu.abs() <= warp.DEPTH_EDGE_RTOL * rho) & (gv.abs() <= warp.DEPTH_EDGE_RTOL * rho)
    valid = (has & (around > 0) & smooth).float()
    return torch.cat([rho * valid, gu * valid, gv * valid, valid], dim=1)


def prepare(depth_tgt: torch.Tensor, depth_src: torch.Tensor | None, k: torch.Tensor, max_points: int) -> Term:
    """The term of one level: target points on a regular grid of its pixels with depth, and the source's map.

    Args:
        depth_tgt: (B, 1, h, w) target z-depth at the level's pixel centres (0: none).
        depth_src: (B, 1, h, w) source z-depth at the same level's pixel centres; None: none
            yet (a prepared target: `with_source` adds each source's).
        k: (4,) level intrinsics.
        max_points: points per pair at most: the grid's step is the smallest that keeps
            no more pixels than this.
    """
    B, _, h, w = depth_tgt.shape
    step = max(1, math.ceil(math.sqrt(h * w / max_points)))
    rows = torch.arange(step // 2, h, step, device=depth_tgt.device)
    cols = torch.arange(step // 2, w, step, device=depth_tgt.device)
    grid = (rows[:, None] * w + cols[None, :]).flatten()  # (m,) row-major pixel indices: a regular subsample
    X, has = warp.back_project(depth_tgt, k)  # (B, h w, 3), (B, h w)
    src = source_map(depth_src) if depth_src is not None else depth_tgt.new_zeros(B, 4, h, w)
    return Term(X[:, grid], has[:, grid], src, k)


def evaluate(term: Term, motion: torch.Tensor) -> Eval:
    """Residuals and in-view mask at `motion` (B, 4, 4), 0 where not in view, and the Jacobian's factors."""
    Y = se3.transform(motion, term.X)  # (B, m, 3)
    uv, front = warp.project(Y, term.k)
    s, inside = warp.sample(term.src, uv, 1.0)  # (B, 4, m): central differences need a neighbour each side
    inview = term.points & front & inside & (s[:, 3] > VALID_SAMPLE)
    x, y, z = Y.unbind(-1)
    iz = 1.0 / torch.where(front, z, torch.ones_like(z))
    r = (s[:, 0] - iz) * inview  # (B, m)
    fx, fy = term.k[0], term.k[1]
    ru, rv = s[:, 1] * fx * iz, s[:, 2] * fy * iz  # rho_u du/dx, rho_v dv/dy: d r / d Y's x and y entries
    a = torch.stack([ru, rv, (iz - ru * x - rv * y) * iz], dim=-1) * inview[..., None]  # (B, m, 3) d r / d Y
    return Eval(r, inview, r.abs(), a, motion[:, :3, :3])


def jacobian(term: Term, ev: Eval) -> torch.Tensor:
    """The Jacobian d r / d delta (T exp(delta)) at `ev`'s motion: (B, m, 6), [b, X x b], b = R^T d r / d Y."""
    b = ev.grad @ ev.R  # (B, m, 3): rows b^T = a^T R
    return torch.cat([b, torch.linalg.cross(term.X, b, dim=-1)], dim=-1)


def normal_equations(term: Term, ev: Eval, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """J^T W J (B, 6, 6) and J^T W r (B, 6) from per-point weights (B, m)."""
    J = jacobian(term, ev)
    wJ = weights[..., None] * J  # (B, m, 6)
    return J.transpose(1, 2) @ wJ, (wJ * ev.r[..., None]).sum(1)
