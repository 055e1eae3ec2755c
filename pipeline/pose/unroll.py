"""The pose solver unrolled with gradients: the alignment term that trains the encoder's features for it.

Why here: the term is the solver's own maths run differentiably (`cost.prepare`,
`cost.residual`, `cost.normal_equations`, the solver's damped step and level set-up,
`se3.exp`), so it lives beside them in `pipeline.pose`, where a change to the solver is
made and seen; `pipeline.training.align` only feeds it pairs during training.

For a batch of pairs (target i, source j) with true motion T_gt = T_j_from_i and the
target's depth, the encoder pyramid of both frames is computed with gradients; from a
start T_0 = T_gt exp(delta) (a random rotation and translation, `perturb`), each level,
coarse to fine, takes `iterations` Gauss-Newton steps exactly as `solver.align` would
(same points, Jacobians, robust weights, damped solve and right update), and after each
level the loss charges where it landed: the mean reprojection error of the target's
points under the estimate against under T_gt (PixLoc's two-view loss, Sarlin et al. 2021),

    e_l = mean_X | pi_n(T_l X) - pi_n(T_gt X) |,    loss = mean_l  CAP tanh(e_l / CAP),

in normalised image coordinates (x/z, y/z: resolution-free, ~ radians of view), capped
smoothly so a pair that diverged (e ~ 1) neither dominates nor wrecks the features
(PixLoc caps its Barron loss for the same reason). `loss.align.error: points` charges the
points' 3-D distance |T_l X - T_gt X| (metres) instead: measured on the demo, the depth-only
encoder's failures were all translation (every rotation within 0.5 degrees, a quarter to
a third of the translations beyond 1 cm), which a 2-D error barely sees along the line of sight.

Against GN-Net's Gauss-Newton loss (one step from a wrong start must land on the truth,
scored by the negative log-likelihood of the truth under the step's Gaussian): GN-Net
trains one undamped step at a single scale with a fixed robust-free Hessian, and its
likelihood rewards a confident H as much as an accurate step. Our solver takes several
damped steps per level, coarse to fine, with Huber weights; unrolling that solver and
charging the geometry it reaches trains exactly what the pose stage uses, with a loss in
the units success is judged in. Against PixLoc's: PixLoc learns a confidence map and its
solver's damping, and unrolls up to 15-20 iterations per level on a GPU; here the
features are the depth network's own (no extra head: the design note's one network),
the damping is the solver's, and 2-3 iterations a level keep a CPU step affordable.

What is held constant (no gradient), and why: the PCA basis of `project_pair` (its
subspace iteration's QR gradients blow up when eigenvalues cross; the centring keeps
its gradient), the robust scale and the IRLS weights (a median, and a weight whose
gradient at a zero residual is 0 x inf), the point selection (an index) and the pose
passed from one level to the next (each level learns to refine what it is given, as
PixLoc's levels do; it also keeps the backward graph to one level at a time).
"""

from __future__ import annotations

import math

import torch

from pipeline.camera import Intrinsics
from pipeline.model.build import DepthNet
from pipeline.pose import cost, robust, se3, warp
from pipeline.pose.features import Pyramid, _encoder_pyramid
from pipeline.pose.solver import AlignOptions, _level, _step

CAP = {"reprojection": 0.1, "points": 0.1}  # errors beyond it are a failed pair, charged ~CAP:
# reprojection in normalised image units (0.1 ~ 5.7 degrees of view), points in metres (10 cm)
LOSS_POINTS = 1024  # target points per pair the reprojection error averages over (a strided subset)
EPS = 1e-12  # inside the square root: the error's gradient at an exact landing is finite


def perturb(truth: torch.Tensor, rot_deg: float, trans_m: float, gen: torch.Generator) -> torch.Tensor:
    """Starts T_gt exp(delta) (B, 4, 4): delta's rotation and translation on random axes, uniform up to the bounds.

    Args:
        truth: (B, 4, 4) true motions.
        rot_deg: largest rotation angle, degrees.
        trans_m: largest translation, metres.
        gen: the CPU generator the draws come from (the run's own: no global RNG is touched).
    """
    B = truth.shape[0]
    axes = torch.nn.functional.normalize(torch.randn(B, 2, 3, generator=gen), dim=-1)  # (B, 2, 3)
    size = torch.rand(B, 2, 1, generator=gen) * torch.tensor([trans_m, math.radians(rot_deg)])[:, None]
    delta = (axes * size).reshape(B, 6).to(truth)  # (v, w): translation first, as se3.exp takes it
    return truth @ se3.exp(delta)


def loss_points(depth: torch.Tensor, camera: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's points (B, m, 3) the loss reprojects, and which have depth (B, m): every k-th pixel."""
    k = warp.level_intrinsics(camera, 1, depth.device)
    X, valid = warp.back_project(depth.float(), k)  # (B, N, 3), (B, N)
    step = max(1, X.shape[1] // LOSS_POINTS)
    return X[:, ::step], valid[:, ::step]


def reprojection_error(
    motion: torch.Tensor, truth: torch.Tensor, points: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """(B,) mean |pi_n(T X) - pi_n(T_gt X)| over the valid points X (B, m, 3), in normalised image units."""

    def plane(motion: torch.Tensor) -> torch.Tensor:
        P = se3.transform(motion, points)  # (B, m, 3)
        return P[..., :2] / P[..., 2:].clamp_min(warp.MIN_Z)  # (B, m, 2): a point behind is pinned near the plane

    e = ((plane(motion) - plane(truth)) ** 2).sum(-1).add(EPS).sqrt()  # (B, m)
    return (e * valid).sum(1) / valid.sum(1).clamp_min(1)


def point_error(motion: torch.Tensor, truth: torch.Tensor, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) mean |T X - T_gt X| over the valid points X (B, m, 3), metres: translation counts in every direction.

    Why beside the reprojection error: a translation along the line of sight moves no
    distant point's projection, so a 2-D loss barely sees it, while the pose stage's
    success threshold (1 cm) counts it in full.
    """
    d = se3.transform(motion, points) - se3.transform(truth, points)  # (B, m, 3)
    e = (d**2).sum(-1).add(EPS).sqrt()  # (B, m)
    return (e * valid).sum(1) / valid.sum(1).clamp_min(1)


ERRORS = {"reprojection": reprojection_error, "points": point_error}


def unroll_level(lv: cost.Level, start: torch.Tensor, iterations: int, damping: float) -> torch.Tensor:
    """`iterations` damped Gauss-Newton steps on one level from `start` (B, 4, 4), with gradients; -> (B, 4, 4).

    The solver's step (`solver._step`: (H + lambda diag H) xi = J^T W r, T <- T exp(-xi)) at a
    fixed damping: no accept/reject branch, which would cut the gradient (PixLoc's unrolled LM
    does the same).
    """
    with torch.no_grad():
        sc = cost.scale_at(lv, start)
    lam = torch.full((start.shape[0],), damping, device=start.device)
    T = start
    for _ in range(iterations):
        r, inview = cost.residual(lv, T)  # (B, C, n), (B, n)
        w = robust.weight(cost.norms(r.detach()), sc) * inview  # (B, n) IRLS weights, constants
        H, g = cost.normal_equations(lv, r, w)
        T = T @ se3.exp(-_step(H, g, lam))
    return T


def encoder_pairs(model: DepthNet, rgb_tgt: torch.Tensor, rgb_src: torch.Tensor, strides: tuple[int, ...]) -> tuple:
    """Both frames' encoder pyramids from one `encode` pass, with gradients: (target, source) `Pyramid`s."""
    B, H, W = rgb_tgt.shape[0], int(rgb_tgt.shape[-2]), int(rgb_tgt.shape[-1])
    pyramid = _encoder_pyramid(model, model.encode(torch.cat([rgb_tgt, rgb_src])), tuple(sorted(strides)), (H, W))
    return pyramid.take(slice(0, B)), pyramid.take(slice(B, None))


def align_loss(
    target: Pyramid, source: Pyramid, depth: torch.Tensor, truth: torch.Tensor, start: torch.Tensor,
    camera: Intrinsics, opts: AlignOptions, iterations: int, error: str = "reprojection",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The unrolled alignment's loss and its per-level errors.

    Args:
        target: the target frames' pyramid, with gradients (`encoder_pairs`).
        source: the source frames' pyramid.
        depth: (B, 1, H, W) target z-depth, metres (0: none).
        truth: (B, 4, 4) true T_j_from_i.
        start: (B, 4, 4) where the solve starts (`perturb`).
        camera: intrinsics of the (H, W) frames.
        opts: the solver's settings (points, channels, border, damping, strides) as the pose stage runs it.
        iterations: Gauss-Newton steps per level.
        error: `reprojection` (`reprojection_error`) or `points` (`point_error`): what each level is charged.

    Returns:
        (scalar loss, (L, B) errors after each level, coarse first, detached).
    """
    X, valid = loss_points(depth, camera)
    T, errors = start.float(), []
    with torch.autocast(device_type=depth.device.type, enabled=False):  # the solve in float32, as the solver's
        for i in reversed(range(len(target.strides))):  # coarse to fine
            lv = _level(target, source, i, depth.float(), camera, opts)
            T = unroll_level(lv, T.detach(), iterations, opts.damping)
            errors.append(ERRORS[error](T, truth.float(), X, valid))
    e, cap = torch.stack(errors), CAP[error]  # (L, B)
    loss = (cap * torch.tanh(e / cap)).mean()
    return loss, e.detach()
