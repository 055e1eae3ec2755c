"""Training losses on depth in metres: Eigen's scale-invariant log loss and its variants.

Why log depth rather than metres (for every loss here): depth errors are relative (10 cm
matters at 1 m, not at 8 m), so an L2 in metres would be dominated by far pixels; the log
makes the loss scale with relative error, is Eigen's loss at lambda = 0, and matches the
log metrics we report (rmse_log, log10, silog).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.config import LossParams, ParamsError

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    """Pixels with a usable ground truth: finite and > 0 (raw Kinect depth is 0 in holes)."""
    return torch.isfinite(target) & (target > 0)


def _check_lam(lam: float) -> None:
    if not 0 <= lam <= 1:
        raise ParamsError(
            f"params: 'loss.lambda' is {lam!r}; "
            "allowed: a number in [0, 1] (0 = L2 on log depth, 1 = fully scale-invariant)"
        )


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) -> (B, H*W)."""
    if t.dim() not in (3, 4) or (t.dim() == 4 and t.shape[1] != 1):
        raise ValueError(f"expected depth of shape (B, 1, H, W) or (B, H, W), got {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1)


def scale_invariant_loss(
    pred: torch.Tensor, target: torch.Tensor, lam: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Eigen et al.'s scale-invariant log loss, per image, averaged over images.

    Per image over its n valid pixels, with d = log pred - log target:
    `(1/n) sum d^2 - (lam/n^2) (sum d)^2`. Eigen's paper (eq. 2-4) writes the lambda = 1
    part in pairwise form, `1/(2n^2) sum_ij (d_i - d_j)^2`, which equals the variance of
    d; the tests check that identity. lambda = 0 is L2 on log depth, 1 is fully
    scale-invariant; 0.5 (params.yaml) is the seed design's choice, the value Eigen used
    in training: it mostly ignores the global scale but still learns it.

    Args:
        pred: predicted depth in metres (B, 1, H, W) or (B, H, W); > 0 where valid.
        target: ground-truth depth, same shape; invalid where <= 0 or non-finite.
        lam: lambda in [0, 1].
        mask: optional bool mask, same shape, combined (AND) with the valid target.

    Returns:
        A scalar: the mean over images with >= 1 valid pixel (an empty image adds
        nothing; an empty batch gives 0, still connected to `pred` for backward).
    """
    _check_lam(lam)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    dtype = torch.promote_types(pred.dtype, torch.float32)  # at least float32, even under autocast
    p, t = _flat(pred).to(dtype), _flat(target).to(dtype)  # (B, N)
    valid = valid_mask(t)
    if mask is not None:
        valid = valid & _flat(mask).bool()
    # Replace masked pixels by 1 *before* the log: torch.where after a log(0) would still
    # back-propagate 0 * inf = NaN through the unselected branch.
    one = torch.ones_like(p)
    d = torch.log(torch.where(valid, p, one)) - torch.log(torch.where(valid, t, one))  # (B, N), 0 where masked
    n = valid.sum(dim=1).to(p.dtype)  # (B,)
    n_safe = n.clamp_min(1)
    per_image = (d**2).sum(1) / n_safe - lam * (d.sum(1) / n_safe) ** 2  # (B,)
    has = (n > 0).to(p.dtype)  # (B,)
    return (per_image * has).sum() / has.sum().clamp_min(1)


def edge_aware_smoothness(log_depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean |grad log depth| weighted by exp(-|grad I|), as in monodepth (Godard et al.).

    Monodepth mean-normalises disparity first so that the term cannot be lowered by
    shrinking the whole map; on log depth that is automatic: log(c d) = log c + log d,
    and the constant vanishes under the gradient, so no normalisation is needed.

    Args:
        log_depth: (B, 1, H, W) predicted log depth.
        image: (B, 3, H, W) RGB in [0, 1]; image edges allow depth edges.
    """
    dx = (log_depth[..., :, 1:] - log_depth[..., :, :-1]).abs()  # (B, 1, H, W-1)
    dy = (log_depth[..., 1:, :] - log_depth[..., :-1, :]).abs()  # (B, 1, H-1, W)
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)  # (B, 1, H, W-1)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)  # (B, 1, H-1, W)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


@dataclass(frozen=True)
class DepthLoss:
    """The training loss chosen by `params.loss`; call as `loss(pred, target, image)`.

    A frozen dataclass rather than a closure: it shows its settings in logs and pickles.
    """

    name: str
    lam: float
    smoothness: float

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Loss for pred/target (B, 1, H, W) metres and image (B, 3, H, W) in [0, 1]."""
        if self.name == "eigen":
            return scale_invariant_loss(pred, target, self.lam)
        loss = scale_invariant_loss(pred, target, 0.0)  # l2: L2 on log depth
        if self.name == "l2_smooth":
            dtype = torch.promote_types(pred.dtype, torch.float32)
            log_pred = torch.log(pred.to(dtype).reshape(pred.shape[0], 1, *pred.shape[-2:]))  # (B, 1, H, W)
            loss = loss + self.smoothness * edge_aware_smoothness(log_pred, image.to(dtype))
        return loss


def build_loss(params: LossParams) -> LossFn:
    """The loss callable for `params.loss` (validated where `LossParams` was made)."""
    return DepthLoss(params.name, params.lam, params.smoothness)
