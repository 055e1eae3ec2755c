"""Direct feature alignment on SE(3): inverse-compositional Levenberg-Marquardt, coarse to fine.

For a pair (target i, source j) the unknown is T = T_j_from_i. At each level, every target
pixel u with depth gives a point X (target frame); the residual is
r(u) = F_src(pi(T X)) - F_tgt(u), robustly weighted (`pipeline.pose.robust`). The
inverse-compositional form (Baker & Matthews; LKVOLearner) perturbs the target side,
F_tgt(pi(exp(xi) X)), so the Jacobian J = grad F_tgt(u) . d pi / d X . [I | -[X]_x]
(`warp.warp_jacobian`) and each pixel's J^T J are computed once per level; an iteration
costs one warp and one bilinear sample of the source. The step solves
(H + lambda diag H) xi = J^T W r and updates T <- T exp(-xi) (a right perturbation,
on the target's side). A step is kept only when it lowers the cost (lambda / 10, else
x 10 and retry). See docs/pose.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from pipeline.camera import Intrinsics
from pipeline.pose import robust, se3, warp
from pipeline.pose.features import Pyramid

STATUS = ("converged", "not_finite", "few_valid", "high_residual", "iteration_cap")
LAMBDA_MAX = 1e4  # LM damping beyond which no descent step exists: the pair sits in a minimum


@dataclass(frozen=True)
class AlignOptions:
    """How `align` runs; the defaults are what docs/pose.md measures."""

    strides: tuple[int, ...] = (1, 2, 4, 8)
    """Pyramid levels (input pixels per feature pixel) to extract and align over, coarse to fine."""
    iterations: int = 20
    """LM iterations per level at most (as LKVOLearner); a pair still moving at the finest level's cap is flagged."""
    huber_k: float = 1.345
    """Huber threshold in robust sigmas (1.4826 x the median residual norm at each level's start)."""
    damping: float = 1e-3
    """Initial Marquardt damping lambda (H + lambda diag H): small, so a good start takes Gauss-Newton steps."""
    step_tol: float = 3e-4
    """A level stops when the step's norm |xi| (metres and radians together) falls below this..."""
    cost_rtol: float = 1e-3
    """...or when a kept step lowers the cost by less than this fraction (or no step lowers it: lambda > 1e4)."""
    max_points: int = 4096
    """Pixels per pair and level at most: the usable ones with the strongest Jacobians (bounds an iteration's cost)."""
    min_valid_fraction: float = 0.1
    """Below this fraction of the finest level's points usable (depth, in view), a pair is flagged `few_valid`."""
    max_residual_ratio: float = 0.6
    """Flag a pair `high_residual` when its residual energy exceeds this fraction of the target features' variance."""

    def __post_init__(self) -> None:
        """Checks the ranges, naming the field."""
        bad = [f.name for f in fields(self) if f.name != "strides" and not getattr(self, f.name) > 0]
        if not self.strides or any(s < 1 or s & (s - 1) for s in self.strides):
            bad.append("strides (powers of two >= 1)")
        if bad:
            raise ValueError(f"AlignOptions: {', '.join(bad)} must be > 0")


@dataclass(frozen=True)
class AlignResult:
    """Per pair: the motion and how it was found (a pair that failed is flagged, never dropped).

    Attributes:
        T: (B, 4, 4) float32 T_j_from_i, always finite (the init where the solve was not).
        converged: (B,) bool: stopped by the stopping rule at the finest level, enough
            valid pixels, residual ratio below the limit, finite.
        residual: (B,) final mean robust cost over the finest level's valid pixels.
        residual_ratio: (B,) sum |r|^2 / sum |F_tgt - mean F_tgt|^2 over those pixels
            (~0 aligned, ~1 or more when the source explains none of the target).
        iterations: (B,) int LM iterations over all levels.
        valid_fraction: (B,) fraction of the finest level's points (min(max_points, h w)) used.
        status: (B,) int index into `STATUS`.
    """

    T: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    residual_ratio: torch.Tensor
    iterations: torch.Tensor
    valid_fraction: torch.Tensor
    status: torch.Tensor


@dataclass
class _Level:
    """What one level's solve holds fixed: target points, target features, Jacobians."""

    X: torch.Tensor  # (B, N, 3) target-frame points
    usable: torch.Tensor  # (B, N) depth valid and an interior pixel (has a gradient)
    f_tgt: torch.Tensor  # (B, C, N): channels first, as grid_sample returns the source's samples
    J: torch.Tensor  # (B, C, N, 6) d F_tgt(pi(exp(xi) X)) / d xi at 0
    JtJ: torch.Tensor  # (B, N, 6, 6)
    f_src: torch.Tensor  # (B, C, h, w) the source map
    k: torch.Tensor  # (4,) level intrinsics


def _prepare(
    f_tgt: torch.Tensor, f_src: torch.Tensor, depth: torch.Tensor, k: torch.Tensor, stride: int, max_points: int
) -> _Level:
    """Back-projects the target's pixels, precomputes the inverse-compositional Jacobians, keeps the strongest.

    Of each pair's usable pixels (depth, interior) at most `max_points` are kept, those
    with the largest feature-gradient energy sum_c |grad F_c|^2: flat pixels constrain nothing and cost as
    much as textured ones (DSO's and LSD-SLAM's semi-dense choice).
    """
    h, w = f_tgt.shape[-2:]
    X, has_depth = warp.back_project(warp.pool_depth(depth, stride, (h, w)), k)  # (B, N, 3), (B, N)
    gu, gv, interior = warp.image_gradient(f_tgt)  # (B, C, N) each, (N,)
    flat = f_tgt.flatten(2)  # (B, C, N)
    usable = has_depth & interior
    if max_points < h * w:  # the gradient energy ranks the pixels before any Jacobian is formed
        keep = ((gu**2 + gv**2).sum(dim=1) * usable).topk(max_points, dim=1).indices  # (B, n)
        X, usable = X.gather(1, keep[..., None].expand(-1, -1, 3)), usable.gather(1, keep)
        flat, gu, gv = (a.gather(2, keep[:, None].expand(-1, a.shape[1], -1)) for a in (flat, gu, gv))
    J = warp.feature_jacobian(gu, gv, warp.warp_jacobian(X, k)).contiguous()  # (B, C, n, 6), flat for _step
    Jn = J.permute(0, 2, 1, 3).contiguous()  # (B, n, C, 6): a copy, then one batched product (2x einsum's speed)
    JtJ = Jn.transpose(-1, -2) @ Jn  # (B, n, 6, 6), once per level
    return _Level(X, usable, flat, J, JtJ, f_src, k)


def _residual(lv: _Level, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residuals (B, C, N), their norms (B, N) and validity (B, N) at `motion` (B, 4, 4)."""
    uv, front = warp.project(se3.transform(motion, lv.X), lv.k)
    f, inside = warp.sample(lv.f_src, uv)  # (B, C, N)
    r = f - lv.f_tgt
    valid = lv.usable & front & inside
    r = torch.where(valid[:, None], r, torch.zeros_like(r))
    return r, (r * r).sum(1).sqrt(), valid


def _step(lv: _Level, r: torch.Tensor, e: torch.Tensor, valid: torch.Tensor, delta, lam) -> torch.Tensor:
    """The damped Gauss-Newton step xi (B, 6) from the current residuals."""
    w = robust.huber_weight(e, delta) * valid  # (B, N)
    B, C, n = r.shape
    # Both reductions as one batched matrix product over contiguous memory (einsum copied J first).
    H = (w[:, None] @ lv.JtJ.reshape(B, n, 36)).reshape(B, 6, 6)  # sum_n w J^T J
    g = ((w[:, None] * r).reshape(B, 1, C * n) @ lv.J.reshape(B, C * n, 6))[:, 0]  # (B, 6) sum_n w J^T r
    diag = torch.diagonal(H, dim1=-2, dim2=-1)
    eye = torch.eye(6, device=H.device, dtype=H.dtype)
    Hd = H + torch.diag_embed(lam[:, None] * diag) + 1e-9 * (diag.mean(-1, keepdim=True)[..., None] + 1e-6) * eye
    xi = torch.linalg.solve_ex(Hd, g[..., None])[0][..., 0]  # no error check: no host sync, NaN handled below
    return torch.nan_to_num(xi, nan=0.0, posinf=0.0, neginf=0.0)


def _solve_level(lv: _Level, start: torch.Tensor, opts: AlignOptions) -> tuple:
    """LM on one level from `start` (B, 4, 4).

    Returns:
        T, converged (B,), iterations (B,), and the final residuals, norms, validity and Huber scale.
    """
    T = start
    B = T.shape[0]
    r, e, valid = _residual(lv, T)
    delta = robust.huber_scale(e, valid, opts.huber_k)
    cost = robust.huber_cost(e, valid, delta)
    lam = torch.full((B,), opts.damping, device=T.device)
    active = torch.ones(B, dtype=torch.bool, device=T.device)
    iters = torch.zeros(B, dtype=torch.long, device=T.device)
    for it in range(opts.iterations):
        xi = _step(lv, r, e, valid, delta, lam)
        T_new = T @ se3.exp(-xi)
        r_new, e_new, valid_new = _residual(lv, T_new)
        cost_new = robust.huber_cost(e_new, valid_new, delta)
        ok = active & torch.isfinite(cost_new) & (cost_new < cost)
        tiny = xi.norm(dim=-1) < opts.step_tol  # stops whether or not the step was kept: nothing left to gain
        flat = cost - cost_new < opts.cost_rtol * cost
        T = torch.where(ok[:, None, None], T_new, T)
        r = torch.where(ok[:, None, None], r_new, r)
        e, valid = torch.where(ok[:, None], e_new, e), torch.where(ok[:, None], valid_new, valid)
        cost = torch.where(ok, cost_new, cost)
        lam = torch.where(ok, lam / 10, lam * 10)
        iters += active.long()
        active = active & ~(tiny | (ok & flat) | (lam > LAMBDA_MAX))
        # Stopping early needs the flags on the host: every iteration on the CPU (free), every 5th elsewhere.
        if (T.device.type == "cpu" or it % 5 == 4) and not bool(active.any()):
            break
    return T, ~active, iters, r, e, valid, delta


@torch.no_grad()
def align(
    target: Pyramid,
    source: Pyramid,
    depth_tgt: torch.Tensor,
    camera: Intrinsics,
    init: torch.Tensor | None = None,
    options: AlignOptions | None = None,
) -> AlignResult:
    """Estimates T_j_from_i for each (target i, source j) pair of the batch.

    Args:
        target: the target frames' pyramid (`extract`).
        source: the source frames' pyramid, same kind, strides and frame size.
        depth_tgt: (B, 1, H, W) target z-depth in metres (0 or NaN: no depth; skipped).
        camera: intrinsics of the (H, W) frames.
        init: (B, 4, 4) starting T_j_from_i (e.g. the previous pair's motion); identity if None
            (and for a pair whose init is not finite).
        options: solver settings (`AlignOptions()` if None).

    Returns:
        `AlignResult`, on the pyramids' device.
    """
    opts = options or AlignOptions()
    if target.strides != source.strides or target.image_hw != source.image_hw or target.kind != source.kind:
        raise ValueError("target and source pyramids differ in kind, strides or frame size")
    if (camera.height, camera.width) != target.image_hw:
        raise ValueError(f"intrinsics are for {camera.height}x{camera.width}, the frames are {target.image_hw}")
    f0 = target.levels[0]
    B, device = f0.shape[0], f0.device
    if depth_tgt.dim() != 4 or depth_tgt.shape[0] != B or tuple(depth_tgt.shape[-2:]) != target.image_hw:
        raise ValueError(
            f"depth_tgt is {tuple(depth_tgt.shape)}, expected ({B}, 1, {target.image_hw[0]}, {target.image_hw[1]})"
        )
    eye = torch.eye(4, device=device).expand(B, 4, 4)
    start = eye.clone() if init is None else init.to(device=device, dtype=torch.float32).clone()
    start = torch.where(torch.isfinite(start).flatten(1).all(1)[:, None, None], start, eye)  # a NaN init: identity
    T, iters = start, torch.zeros(B, dtype=torch.long, device=device)
    for i in reversed(range(len(target.strides))):  # coarse to fine
        k = warp.level_intrinsics(camera, target.strides[i], device)
        lv = _prepare(target.levels[i], source.levels[i], depth_tgt.to(device), k, target.strides[i], opts.max_points)
        T, done, n, r, e, valid, delta = _solve_level(lv, T, opts)
        iters += n
    return _result(lv, T, start, done, iters, r, e, valid, delta, opts)


def _result(lv: _Level, motion, start, done, iters, r, e, valid, delta, opts: AlignOptions) -> AlignResult:
    """Flags and fall-backs from the finest level's final state."""
    T = motion
    n = valid.sum(dim=1).clamp_min(1)
    frac = valid.float().mean(dim=1)
    mean = (lv.f_tgt * valid[:, None]).sum(dim=2, keepdim=True) / n[:, None, None]  # (B, C, 1)
    spread = (((lv.f_tgt - mean) ** 2).sum(1) * valid).sum(dim=1)  # (B,)
    ratio = (r**2).sum(dim=(1, 2)) / spread.clamp_min(1e-12)
    cost = robust.huber_cost(e, valid, delta)
    finite = torch.isfinite(T).flatten(1).all(dim=1) & torch.isfinite(cost)
    few = frac < opts.min_valid_fraction
    status = torch.full_like(iters, STATUS.index("converged"))
    status = torch.where(~done, STATUS.index("iteration_cap"), status)
    status = torch.where(ratio > opts.max_residual_ratio, STATUS.index("high_residual"), status)
    status = torch.where(few, STATUS.index("few_valid"), status)
    status = torch.where(~finite, STATUS.index("not_finite"), status)
    fall_back = (~finite | few)[:, None, None]
    T = torch.where(fall_back, start, torch.nan_to_num(T))
    return AlignResult(
        T=T,
        converged=status == 0,
        residual=torch.nan_to_num(cost, nan=float("inf")),
        residual_ratio=torch.nan_to_num(ratio, nan=float("inf")),
        iterations=iters,
        valid_fraction=frac,
        status=status,
    )
