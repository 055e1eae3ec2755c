"""One pyramid level's alignment cost: its fixed point set, residuals, and factorised normal equations.

For target point X (from the target's depth at level pixel u) the residual is
r = F_src(pi(T X)) - F_tgt(u), a C-vector. Inverse-compositional (Baker & Matthews;
LKVOLearner): the Jacobian is taken on the target's side, at the identity, once per level,

    J = grad F_tgt(u) . Jw,   grad F_tgt: (C, 2),   Jw = d pi(exp(xi) X) / d xi: (2, 6),

so it factors through the point's 2-D image motion. With a robust weight w per point
(not per channel) the normal equations never need the (C, 6) Jacobian itself:

    J^T W J = sum_n w_n Jw_n^T S_n Jw_n,   S_n = sum_c grad F_c grad F_c^T  (a 2x2 structure tensor)
    J^T W r = sum_n w_n Jw_n^T q_n,        q_n = sum_c grad F_c r_c          (2 numbers a point)

exactly (tested against the full Jacobian). A level stores S (3 numbers a point), Jw and
the (C, 2) gradients; an iteration costs one warp, one bilinear sample of the source,
C x 2 products a point and two (6 x n) @ (n x 6) products.

The point set is fixed per level: the usable pixels (depth, away from the border) with the
strongest gradients. A point that a step pushes out of view stays in the cost, charged
the robust cost's cap (`pipeline.pose.robust.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pipeline.pose import geometric, robust, se3, warp


@dataclass(frozen=True)
class Level:
    """What one level's solve holds fixed (B pairs, n points)."""

    X: torch.Tensor  # (B, n, 3) target-frame points
    points: torch.Tensor  # (B, n) the fixed set: depth, interior, selected
    f_tgt: torch.Tensor  # (B, C, n) target features at the points
    gu: torch.Tensor  # (B, C, n) d F_tgt / du at the points
    gv: torch.Tensor  # (B, C, n) d F_tgt / dv
    du: torch.Tensor  # (B, n, 6) d u / d xi: the warp's Jacobian at the identity, first row
    dv: torch.Tensor  # (B, n, 6) d v / d xi, second row
    S: torch.Tensor  # (B, n, 3) structure tensor entries (a, b, c): S = [[a, b], [b, c]]
    f_src: torch.Tensor  # (B, C, h, w) the source map
    k: torch.Tensor  # (4,) level intrinsics
    border: float  # level pixels at the map's edge a source sample may not come from
    geo: geometric.Term | None = None  # the geometric (depth) term beside the photometric one, if used

    def with_source(self, f_src: torch.Tensor, depth_src: torch.Tensor | None = None) -> Level:
        """This level against another source map (B, C, h, w) (and level depth (B, 1, h, w) for the geometric term).

        The target's terms are reused as they are.
        """
        geo = self.geo.with_source(depth_src) if self.geo is not None and depth_src is not None else self.geo
        return replace(self, f_src=f_src, geo=geo)

    def take(self, idx: torch.Tensor) -> Level:
        """The pairs `idx` (B',) of this level (finished pairs leave the batch)."""
        geo = None if self.geo is None else self.geo.take(idx)
        return Level(self.X[idx], self.points[idx], self.f_tgt[idx], self.gu[idx], self.gv[idx], self.du[idx],
                     self.dv[idx], self.S[idx], self.f_src[idx], self.k, self.border, geo)  # fmt: skip


def prepare(
    f_tgt: torch.Tensor, f_src: torch.Tensor, depth: torch.Tensor, k: torch.Tensor, max_points: int, border: int,
    geo: geometric.Term | None = None,
) -> Level:  # fmt: skip
    """Back-projects the target's level pixels, keeps the strongest, and precomputes their Jacobian terms.

    Args:
        f_tgt: (B, C, h, w) target map.
        f_src: (B, C, h, w) source map.
        depth: (B, 1, h, w) z-depth at the level's pixel centres (`warp.sample_depth`), 0: none.
        k: (4,) level intrinsics.
        max_points: points per pair at most: the usable pixels with the largest gradient
            energy sum_c |grad F_c|^2 (flat pixels constrain nothing and cost as much:
            DSO's and LSD-SLAM's semi-dense choice).
        border: level pixels at the edge neither a target point nor a source sample may use
            (CNN features there see the convolutions' zero padding; PixLoc keeps 4).
        geo: the level's geometric term (`geometric.prepare`), or None: photometric only.
    """
    B, C, h, w = f_tgt.shape
    X, has_depth = warp.back_project(depth, k)  # (B, N, 3), (B, N)
    gu, gv, interior = warp.image_gradient(f_tgt, border)  # (B, C, N) each, (N,)
    flat = f_tgt.flatten(2)  # (B, C, N)
    usable = has_depth & interior
    energy = (gu**2 + gv**2).sum(dim=1)  # (B, N)
    if max_points < h * w:
        keep = (energy * usable).topk(max_points, dim=1).indices  # (B, n)
        X, usable = X.gather(1, keep[..., None].expand(-1, -1, 3)), usable.gather(1, keep)
        flat, gu, gv = (a.gather(2, keep[:, None].expand(-1, C, -1)) for a in (flat, gu, gv))
    S = torch.stack([(gu * gu).sum(1), (gu * gv).sum(1), (gv * gv).sum(1)], dim=-1)  # (B, n, 3)
    Jw = warp.warp_jacobian(X, k)  # (B, n, 2, 6)
    du, dv = Jw[..., 0, :].contiguous(), Jw[..., 1, :].contiguous()  # (B, n, 6) each
    return Level(X, usable, flat, gu, gv, du, dv, S, f_src, k, float(border), geo)


def residual(lv: Level, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals (B, C, n) at `motion` (B, 4, 4) and whether each point is in view (B, n); 0 where not."""
    uv, front = warp.project(se3.transform(motion, lv.X), lv.k)
    f, inside = warp.sample(lv.f_src, uv, lv.border)  # (B, C, n)
    inview = lv.points & front & inside
    return (f - lv.f_tgt) * inview[:, None], inview


def normal_equations(lv: Level, r: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """J^T W J (B, 6, 6) and J^T W r (B, 6) from residuals (B, C, n) and per-point weights (B, n), factorised."""
    # sum_n w_n Jw^T S Jw = du^T (w a du + w b dv) + dv^T (w b du + w c dv): two (6, n) @ (n, 6)
    # products a pair (precomputing Jw^T S Jw per point, 36 numbers, cost more than it saved).
    wa, wb, wc = (weights[..., None] * lv.S[..., i : i + 1] for i in range(3))  # (B, n, 1) each
    H = lv.du.transpose(1, 2) @ (wa * lv.du + wb * lv.dv) + lv.dv.transpose(1, 2) @ (wb * lv.du + wc * lv.dv)
    qu, qv = (lv.gu * r).sum(1) * weights, (lv.gv * r).sum(1) * weights  # (B, n) w sum_c grad F_c r_c
    g = (qu[:, None] @ lv.du + qv[:, None] @ lv.dv)[:, 0]  # (B, 6): sum over n as two (1, n) @ (n, 6)
    return H, g


def norms(r: torch.Tensor) -> torch.Tensor:
    """(B, C, n) residuals -> (B, n) norms (`Tensor.norm` over a middle dim was 5x slower here)."""
    return (r * r).sum(1).sqrt()


def full_jacobian(lv: Level) -> torch.Tensor:
    """The unfactorised (B, C, n, 6) Jacobian grad F . Jw: the reference the tests hold the factorisation to."""
    return warp.feature_jacobian(lv.gu, lv.gv, torch.stack([lv.du, lv.dv], dim=-2))


def scale_at(lv: Level, motion: torch.Tensor) -> robust.Scale:
    """The level's robust scale from the residuals at `motion` (its start)."""
    r, inview = residual(lv, motion)
    return robust.scale(r, norms(r), inview)
