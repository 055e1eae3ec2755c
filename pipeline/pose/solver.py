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
from pipeline.pose import cost, geometric, robust, se3, warp
from pipeline.pose.features import Projection, Pyramid, fit_projection, project_pair
from pipeline.pose.serial import one_thread

STATUS = ("converged", "not_finite", "few_valid", "high_residual", "iteration_cap", "damping_limit")
LAMBDA_MAX = 1e4  # LM damping beyond which no descent step exists: the pair sits in a minimum


@dataclass(frozen=True)
class AlignOptions:
    """How `align` runs; the defaults are what docs/pose.md measures."""

    strides: tuple[int, ...] = (1, 2, 4, 8)
    """Pyramid levels (input pixels per feature pixel) to extract and align over, coarse to fine."""
    iterations: int = 20
    """LM iterations per level at most (as LKVOLearner); a pair still moving at the finest level's cap is flagged."""
    damping: float = 1e-3
    """Initial Marquardt damping lambda (H + lambda diag H): small, so a good start takes Gauss-Newton steps."""
    step_tol: float = 3e-4
    """A level stops when the step's norm |xi| (metres and radians together) falls below this..."""
    cost_rtol: float = 1e-3
    """...or when a kept step lowers the cost by less than this fraction (or no step lowers it: lambda > 1e4)."""
    max_points: int = 4096
    """Points per pair and level at most for a 240x320 frame (scaled with a larger frame's area: `point_budget`)."""
    channels: int = 32
    """Encoder levels with more channels are projected onto the pair's leading principal components (PixLoc: 32-128)."""
    feature_border: int = 4
    """Encoder levels: level pixels at the map's edge left out, as PixLoc (the convolutions' padding shows there)."""
    min_valid_fraction: float = 0.1
    """Below this fraction of the finest level's points usable (depth, in view), a pair is flagged `few_valid`."""
    max_residual_ratio: float = 0.6
    """Flag a pair `high_residual` when its residual energy exceeds this fraction of the target features' variance."""
    depth_weight: float = 0.0
    """Weight of the geometric term (`pipeline.pose.geometric`: the source's measured inverse depth) against the
    photometric one, each scaled by its own robust scale; 0: photometric only. Needs the source's depth."""
    depth_finest: bool = False
    """The geometric term at the finest level too. Off: it widens the basin at the coarser levels, and the finest
    aligns on the photometric term alone, because depth not taken with its colour image biases it there (TUM's
    fr1/rpy: the associated depth frame is a median 13 ms, at most 20 ms, off; ~1 degree of its motion)."""

    def __post_init__(self) -> None:
        """Checks the ranges, naming the field."""
        bad = [
            f.name
            for f in fields(self)
            if f.name not in ("strides", "feature_border", "depth_weight", "depth_finest")
            and not getattr(self, f.name) > 0
        ]
        if self.feature_border < 0:
            bad.append("feature_border (>= 0)")
        if not self.depth_weight >= 0:
            bad.append("depth_weight (>= 0)")
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
        covariance: (B, 6, 6) sigma^2 (J^T W J)^-1 at the finest level, order (v, w): metres^2
            and radians^2; a wide one (e.g. sqrt of its trace) marks a pair as lost.
    """

    T: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    residual_ratio: torch.Tensor
    iterations: torch.Tensor
    valid_fraction: torch.Tensor
    status: torch.Tensor
    covariance: torch.Tensor


@dataclass(frozen=True)
class _Scales:
    """A level's robust scales per pair (B,), and how the geometric term weighs against the photometric one.

    `kappa` = depth_weight x (delta_photo / delta_depth)^2: with it each term's Huber cost
    counts in units of its own scale (`rho(a e; a delta) = a^2 rho(e; delta)`), so the
    weight is unitless. The cost is a mean per term, so the normal equations (sums) take
    the geometric term times kappa x n_photo / n_depth (`kappa_sum`).
    """

    photo: robust.Scale
    depth: robust.Scale | None = None
    kappa: torch.Tensor | None = None  # (B,)
    kappa_sum: torch.Tensor | None = None  # (B,)

    def take(self, idx: torch.Tensor) -> _Scales:
        if self.depth is None or self.kappa is None or self.kappa_sum is None:
            return _Scales(robust.Scale(self.photo.delta[idx]))
        return _Scales(robust.Scale(self.photo.delta[idx]), robust.Scale(self.depth.delta[idx]), self.kappa[idx],
                       self.kappa_sum[idx])  # fmt: skip


@dataclass(frozen=True)
class _Eval:
    """Both terms at one motion: photometric residuals (B, C, n), in view (B, n), norms (B, n); the geometric term's."""

    r: torch.Tensor
    inview: torch.Tensor
    e: torch.Tensor
    geo: geometric.Eval | None


def _scales(lv: cost.Level, ev: _Eval, opts: AlignOptions) -> _Scales:
    """The level's scales from its residuals `ev` at its start."""
    sc = robust.scale(ev.r, ev.e, ev.inview)  # as cost.scale_at
    if lv.geo is None or ev.geo is None:
        return _Scales(sc)
    sz = robust.scale(ev.geo.r[:, None], ev.geo.e, ev.geo.inview)  # one channel: Huber's 1.345 sigma
    sz = robust.Scale(sz.delta.clamp_min(geometric.MIN_SCALE))
    kappa = opts.depth_weight * (sc.delta / sz.delta) ** 2
    ratio = lv.points.sum(1).clamp_min(1) / lv.geo.points.sum(1).clamp_min(1)
    return _Scales(sc, sz, kappa, kappa * ratio)


def _evaluate(lv: cost.Level, motion: torch.Tensor) -> _Eval:
    r, inview = cost.residual(lv, motion)
    return _Eval(r, inview, cost.norms(r), None if lv.geo is None else geometric.evaluate(lv.geo, motion))


def _cost(lv: cost.Level, ev: _Eval, sc: _Scales, held: torch.Tensor) -> torch.Tensor:
    """(B,) the mean robust cost; `held` (B, n [+ m]) holds each point's out-of-view charge, photometric first."""
    n = ev.e.shape[1]
    c = robust.cost(ev.e, ev.inview, lv.points, sc.photo, held[:, :n])
    if ev.geo is None or lv.geo is None or sc.depth is None or sc.kappa is None:
        return c
    return c + sc.kappa * robust.cost(ev.geo.e, ev.geo.inview, lv.geo.points, sc.depth, held[:, n:])


def _hold(ev: _Eval, sc: _Scales, held: torch.Tensor | None = None) -> torch.Tensor:
    """`robust.hold` per term, concatenated over the points (B, n [+ m])."""
    n = ev.e.shape[1]
    h = robust.hold(ev.e, ev.inview, sc.photo, None if held is None else held[:, :n])
    if ev.geo is None or sc.depth is None:
        return h
    hz = robust.hold(ev.geo.e, ev.geo.inview, sc.depth, None if held is None else held[:, n:])
    return torch.cat([h, hz], dim=1)


def _normal(lv: cost.Level, ev: _Eval, sc: _Scales) -> tuple[torch.Tensor, torch.Tensor]:
    """J^T W J (B, 6, 6) and J^T W r (B, 6) of the whole cost."""
    H, g = cost.normal_equations(lv, ev.r, robust.weight(ev.e, sc.photo) * ev.inview)
    if lv.geo is None or ev.geo is None or sc.depth is None or sc.kappa_sum is None:
        return H, g
    Hz, gz = geometric.normal_equations(lv.geo, ev.geo, robust.weight(ev.geo.e, sc.depth) * ev.geo.inview)
    return H + sc.kappa_sum[:, None, None] * Hz, g + sc.kappa_sum[:, None] * gz


def _solve_level(lv: cost.Level, start: torch.Tensor, opts: AlignOptions) -> tuple:
    """LM on one level from `start` (B, 4, 4); a pair that stops is frozen, then leaves the batch.

    The loop holds only the live pairs' state (motion, normal equations, cost, damping,
    held costs). Residuals are not kept between iterations and a rejected step reuses H
    and g as they are; the residuals at the end are recomputed once. Stopped pairs are
    dropped at each host sync: every iteration on the CPU (a sync costs nothing there),
    every 5th on CUDA (until then they stay frozen).

    Returns:
        T (B, 4, 4), stop reason (B,) (`_RUNNING` where the cap ended it), iterations (B,),
        and at T: photometric residuals (B, C, n), in-view mask (B, n), photometric scale,
        J^T W J (B, 6, 6), photometric held costs (B, n).
    """
    B, dev = start.shape[0], start.device
    ev = _evaluate(lv, start)
    sc = _scales(lv, ev, opts)
    H, g = _normal(lv, ev, sc)
    held = _hold(ev, sc)
    c = _cost(lv, ev, sc, held)
    lam = torch.full((B,), opts.damping, device=dev)
    why = torch.full((B,), _RUNNING, dtype=torch.long, device=dev)
    out = [start.clone(), why.clone(), torch.zeros_like(why), H.clone(), held.clone()]  # T, reason, iters, H, held
    live, sub, sc_sub, T, n = torch.arange(B, device=dev), lv, sc, start.clone(), torch.zeros_like(why)
    for it in range(opts.iterations):
        run = why == _RUNNING  # (b,) frozen pairs take no step
        xi = _step(H, g, lam)  # (b, 6)
        T_new = T @ se3.exp(-xi)
        ev_new = _evaluate(sub, T_new)
        c_new = _cost(sub, ev_new, sc_sub, held)
        ok = run & torch.isfinite(c_new) & (c_new < c)
        T = torch.where(ok[:, None, None], T_new, T)
        held = torch.where(ok[:, None], _hold(ev_new, sc_sub, held), held)
        if dev.type != "cpu" or bool(ok.any()):  # all rejected: H and g stand (a sync on CPU only)
            H_new, g_new = _normal(sub, ev_new, sc_sub)
            H, g = torch.where(ok[:, None, None], H_new, H), torch.where(ok[:, None], g_new, g)
        gain, c = c - c_new, torch.where(ok, c_new, c)
        lam = torch.where(ok, lam / 10, torch.where(run, lam * 10, lam))
        why = torch.where(run, _stop_reason(xi, ok, gain, c_new, lam, opts), why)
        n = n + run.long()
        last = it == opts.iterations - 1
        if dev.type == "cpu" or it % 5 == 4 or last:
            going = why == _RUNNING
            if last or not bool(going.all()):
                for o, x in zip(out, (T, why, n, H, held), strict=True):
                    o[live] = x
                live, T, H, g, c, lam, held, why, n = (x[going] for x in (live, T, H, g, c, lam, held, why, n))
                if live.numel() == 0:
                    break
                sub, sc_sub = lv.take(live), sc.take(live)
    r, inview = cost.residual(lv, out[0])
    return out[0], out[1], out[2], r, inview, sc.photo, out[3], out[4][:, : r.shape[2]]


_RUNNING, _SMALL_STEP, _DAMPED = 0, 1, 2  # why a pair's level ended (or not)


def _stop_reason(xi, ok, gain, c_new, lam, opts: AlignOptions) -> torch.Tensor:
    """Why each live pair stops: (b,) `_SMALL_STEP`, `_DAMPED` or `_RUNNING`.

    `_SMALL_STEP` (converged): the undamped step, kept or not, or the kept step's gain is
    negligible; `_DAMPED`: no step lowers the cost even damped to nothing (stuck, not converged).
    """
    # |xi| (1 + lam) approximates the undamped Gauss-Newton step (and gain (1 + lam) its gain, to first order):
    # a step made small by damping is no convergence; such a pair ends at the damping limit.
    damped = 1 + lam
    small = (xi.norm(dim=-1) * damped < opts.step_tol) | (ok & (gain * damped < opts.cost_rtol * c_new.abs()))
    why = torch.full_like(lam, _RUNNING, dtype=torch.long)
    why = torch.where(lam > LAMBDA_MAX, _DAMPED, why)
    return torch.where(small, _SMALL_STEP, why)


def _step(H: torch.Tensor, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:  # noqa: N803
    """The damped Gauss-Newton step xi (b, 6) solving (H + lam diag H) xi = g."""
    diag = torch.diagonal(H, dim1=-2, dim2=-1)  # (b, 6)
    eye = torch.eye(6, device=H.device, dtype=H.dtype)
    Hd = H + torch.diag_embed(lam[:, None] * diag) + 1e-9 * (diag.mean(-1, keepdim=True)[..., None] + 1e-6) * eye
    with one_thread(H.device):  # a batch of 6x6 systems: threads only wait on each other (serial.py)
        xi = torch.linalg.solve_ex(Hd, g[..., None])[0][..., 0]  # no error check: no host sync, NaN handled below
    return torch.nan_to_num(xi, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass(frozen=True)
class PreparedTarget:
    """A batch of targets' levels prepared once, to align several sources against (`prepare_target`).

    What a level holds fixed (points, target features, gradients, warp Jacobians) depends
    on the target alone once its features do: a tracker aligns every frame to one keyframe,
    so preparing the keyframe once saves that work for every frame it serves (and for the
    retry from a second start). Intensities depend on the target alone as they are; encoder
    levels are centred and projected with a `Projection` fitted on the target alone
    (`fit_projection`) instead of the pair's (`project_pair`), and each source is mapped
    with that same projection: one map for both frames, as the pair's own gives.
    """

    levels: tuple[cost.Level, ...]  # in the pyramid's strides order
    projections: tuple[Projection | None, ...]  # per level: the encoder's (None: intensities)
    target: Pyramid

    def level(self, i: int, source: Pyramid, depth_src: torch.Tensor | None = None) -> cost.Level:
        """Level i against `source`'s map (projected as the target's was) and depth (B, 1, H, W) if the term uses it."""
        f_src, proj = source.levels[i], self.projections[i]
        lv = self.levels[i]
        d_src = None
        if lv.geo is not None and depth_src is not None:
            d_src = _level_depth(depth_src.to(f_src.device), self.target, i, lv.f_src.shape[-2:])
        return lv.with_source(f_src if proj is None else proj.apply(f_src), d_src)


@torch.no_grad()
def prepare_target(
    target: Pyramid, depth_tgt: torch.Tensor, camera: Intrinsics, options: AlignOptions | None = None
) -> PreparedTarget:
    """The target's levels for `align(..., prepared=)` (arguments as `align`).

    With `options.depth_weight` > 0 the geometric term's target points are prepared too;
    each source's depth comes with `align(..., depth_src=)`.

    Raises:
        ValueError: the intrinsics or the depth do not fit the target's frames.
    """
    opts = options or AlignOptions()
    _check_target(target, depth_tgt, camera)
    depth = depth_tgt.to(target.levels[0].device)
    levels, projections = [], []
    for i, f in enumerate(target.levels):
        proj = fit_projection([f], opts.channels) if target.kind == "encoder" else None
        levels.append(_level(target, target, i, depth, camera, opts, proj, geometric_term=_uses_depth(opts, i)))
        projections.append(proj)
    return PreparedTarget(tuple(levels), tuple(projections), target)


def _check_target(target: Pyramid, depth_tgt: torch.Tensor, camera: Intrinsics) -> None:
    """Raises ValueError when the intrinsics or the depth do not fit the target's frames."""
    if (camera.height, camera.width) != target.image_hw:
        raise ValueError(f"intrinsics are for {camera.height}x{camera.width}, the frames are {target.image_hw}")
    B = target.levels[0].shape[0]
    if depth_tgt.dim() != 4 or depth_tgt.shape[0] != B or tuple(depth_tgt.shape[-2:]) != target.image_hw:
        raise ValueError(
            f"depth_tgt is {tuple(depth_tgt.shape)}, expected ({B}, 1, {target.image_hw[0]}, {target.image_hw[1]})"
        )


@torch.no_grad()
def align(
    target: Pyramid,
    source: Pyramid,
    depth_tgt: torch.Tensor,
    camera: Intrinsics,
    init: torch.Tensor | None = None,
    options: AlignOptions | None = None,
    prepared: PreparedTarget | None = None,
    depth_src: torch.Tensor | None = None,
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
        prepared: `prepare_target(target, depth_tgt, camera, options)`, made once for
            several sources (a tracker's keyframe); None prepares the target here.
        depth_src: (B, 1, H, W) source z-depth in metres, for the geometric term
            (`options.depth_weight` > 0; ignored at 0).

    Returns:
        `AlignResult`, on the pyramids' device.

    Raises:
        ValueError: mismatched pyramids, intrinsics or depth; `depth_weight` > 0 without `depth_src`.
    """
    opts = options or AlignOptions()
    if target.strides != source.strides or target.image_hw != source.image_hw or target.kind != source.kind:
        raise ValueError("target and source pyramids differ in kind, strides or frame size")
    if prepared is not None and prepared.target is not target:
        raise ValueError("prepared was made for another target pyramid")
    _check_target(target, depth_tgt, camera)
    geo = opts.depth_weight > 0
    if geo and depth_src is None:
        raise ValueError("options.depth_weight > 0 needs the source frames' depth: pass depth_src")
    if geo and depth_src is not None and tuple(depth_src.shape) != tuple(depth_tgt.shape):
        raise ValueError(f"depth_src is {tuple(depth_src.shape)}, expected {tuple(depth_tgt.shape)} as depth_tgt")
    if geo and depth_src is not None:
        depth_src = _distinct_depth(depth_src, depth_tgt)
    f0 = target.levels[0]
    B, device = f0.shape[0], f0.device
    eye = torch.eye(4, device=device).expand(B, 4, 4)
    start = eye.clone() if init is None else init.to(device=device, dtype=torch.float32).clone()
    start = torch.where(torch.isfinite(start).flatten(1).all(1)[:, None, None], start, eye)  # a NaN init: identity
    T, iters = start, torch.zeros(B, dtype=torch.long, device=device)
    for i in reversed(range(len(target.strides))):  # coarse to fine
        if prepared is not None:
            lv = prepared.level(i, source, depth_src if geo else None)
            if _uses_depth(opts, i) != (lv.geo is not None):
                raise ValueError("prepared was made with other depth_weight or depth_finest; prepare it with these")
        else:
            d_src = depth_src.to(device) if geo and depth_src is not None else None
            lv = _level(target, source, i, depth_tgt.to(device), camera, opts, depth_src=d_src,
                        geometric_term=_uses_depth(opts, i))  # fmt: skip
        T, reason, n, r, inview, sc, H, held = _solve_level(lv, T, opts)
        iters += n
    return _result(lv, T, start, reason, iters, r, inview, sc, H, held, opts)


def _distinct_depth(depth_src: torch.Tensor, depth_tgt: torch.Tensor) -> torch.Tensor:
    """`depth_src` (B, 1, H, W), emptied (0: no depth, so no geometric term) for a pair given one image for both.

    TUM's association gives an RGB frame the nearest depth frame, so where the sensor
    dropped one, two frames share a depth image: its residuals are then 0 at the identity
    whatever the motion, and the term would pull the pair toward standing still.
    """
    src = depth_src.to(depth_tgt.device)
    same = (src == depth_tgt.to(src.dtype)).flatten(1).all(dim=1)  # (B,)
    return torch.where(same[:, None, None, None], torch.zeros_like(src), src)


def _uses_depth(opts: AlignOptions, i: int) -> bool:
    """Whether level i (0: the finest) carries the geometric term."""
    return opts.depth_weight > 0 and (i > 0 or opts.depth_finest)


def _level(target: Pyramid, source: Pyramid, i: int, depth: torch.Tensor, camera: Intrinsics, opts,
           projection: Projection | None = None, depth_src: torch.Tensor | None = None,
           geometric_term: bool = False) -> cost.Level:  # fmt: skip
    """Level i's fixed terms: the projected maps (encoder), depth at its pixel centres, its intrinsics.

    Encoder maps are centred and projected with `projection`, or (None) the pair's own
    (`project_pair`). With `geometric_term` the level carries the geometric term, against
    `depth_src` (None: a prepared target's, without a source yet).
    """
    s, o = target.strides[i], target.offsets[i]
    f_tgt, f_src = target.levels[i], source.levels[i]
    border = 0
    if target.kind == "encoder":  # learned features: shared centring and projection, border margin
        if projection is None:
            f_tgt, f_src = project_pair(f_tgt, f_src, opts.channels)
        else:
            f_tgt = projection.apply(f_tgt)
            f_src = f_tgt if source is target else projection.apply(f_src)
        h, w = f_tgt.shape[-2:]
        border = min(opts.feature_border, max(0, (min(h, w) - 8) // 4))  # a tiny map keeps half its pixels
    k = warp.level_intrinsics(camera, s, depth.device, o)
    hw = (int(f_tgt.shape[-2]), int(f_tgt.shape[-1]))
    d = _level_depth(depth, target, i, hw)
    budget = point_budget(target.image_hw, opts, finest=i == 0)
    geo = None
    if geometric_term:
        d_src = None if depth_src is None else _level_depth(depth_src, target, i, hw)
        geo = geometric.prepare(d, d_src, k, budget)
    return cost.prepare(f_tgt, f_src, d, k, budget, border, geo)


def _level_depth(depth: torch.Tensor, pyramid: Pyramid, i: int, hw) -> torch.Tensor:
    """(B, 1, H, W) depth at level i's pixel centres (B, 1, h, w) (`warp.sample_depth`)."""
    return warp.sample_depth(depth, pyramid.strides[i], (int(hw[0]), int(hw[1])), pyramid.offsets[i])


REFERENCE_PIXELS = 240 * 320  # the frame size `max_points` is set for


def point_budget(image_hw: tuple[int, int], opts: AlignOptions, finest: bool = True) -> int:
    """Points a level for frames of `image_hw`: `max_points`, the finest level's times the area beyond 240x320.

    Why scale the finest: a fixed budget keeps a shrinking share of a larger frame's pixels,
    only the very strongest edges, and made 480x640 less accurate than 240x320 on real
    frames (fr1_rpy dev, intensities + sensor: ATE 20.3 against 19.2 mm; 15.5 mm with the
    budget scaled). Smaller frames keep `max_points` (fewer lost accuracy at 128x160).
    Why not the coarser levels: they bring the pair into the finest level's basin, and the
    finest sets the accuracy; at 480x640 scaling them too cost 1.4x the time for the same
    ATE (fr1_rpy dev, all 394 frames, keyframe tracking: 17.9 against 18.8 mm).
    """
    if not finest:
        return opts.max_points
    return int(opts.max_points * max(1.0, image_hw[0] * image_hw[1] / REFERENCE_PIXELS))


def _result(lv: cost.Level, motion, start, reason, iters, r, inview, sc, H, held, opts: AlignOptions) -> AlignResult:  # noqa: N803
    """Flags and fall-backs from the finest level's final state."""
    T = motion
    n = inview.sum(dim=1).clamp_min(1)
    frac = inview.float().mean(dim=1)
    mean = (lv.f_tgt * inview[:, None]).sum(dim=2, keepdim=True) / n[:, None, None]  # (B, C, 1)
    spread = (((lv.f_tgt - mean) ** 2).sum(1) * inview).sum(dim=1)  # (B,)
    ratio = (r**2).sum(dim=(1, 2)) / spread.clamp_min(1e-12)
    e = cost.norms(r)
    c = robust.cost(e, inview, lv.points, sc, held)
    finite = torch.isfinite(T).flatten(1).all(dim=1) & torch.isfinite(c)
    few = frac < opts.min_valid_fraction
    status = torch.full_like(iters, STATUS.index("converged"))
    status = torch.where(reason == _RUNNING, STATUS.index("iteration_cap"), status)
    status = torch.where(reason == _DAMPED, STATUS.index("damping_limit"), status)
    status = torch.where(ratio > opts.max_residual_ratio, STATUS.index("high_residual"), status)
    status = torch.where(few, STATUS.index("few_valid"), status)
    status = torch.where(~finite, STATUS.index("not_finite"), status)
    fall_back = (~finite | few)[:, None, None]
    T = torch.where(fall_back, start, torch.nan_to_num(T))
    # Gauss-Newton covariance: sigma^2 (J^T W J)^-1, sigma^2 the weighted residual energy per point.
    w = robust.weight(e, sc) * inview
    sigma2 = (w * e * e).sum(1) / (n - 6).clamp_min(1)
    with one_thread(H.device):
        cov = torch.linalg.pinv(H.double()).float() * sigma2[:, None, None]
    return AlignResult(
        T=T,
        converged=status == 0,
        residual=torch.nan_to_num(c, nan=float("inf")),
        residual_ratio=torch.nan_to_num(ratio, nan=float("inf")),
        iterations=iters,
        valid_fraction=frac,
        status=status,
        covariance=torch.nan_to_num(cov, nan=float("inf")),
    )
