"""The robust cost: a Huber function of each point's feature-residual norm, scaled for C channels.

Per point the residual is a C-vector r (source feature minus target feature); its norm
e = |r| is what the robust function rho sees, so a point is one observation whatever C is.

Scale (why not 1.345 x 1.4826 x median(e)): Huber's k = 1.345 sigma is the 95 %-efficiency
threshold for a *scalar* Gaussian residual, where it leaves 82 % of the inliers in the
quadratic zone. The norm of a C-vector of Gaussian noise is not Gaussian: e^2 / sigma^2 is
chi-square, and 1.4826 x median(e) estimates sigma sqrt(C) roughly, not sigma, so the old
rule put the threshold at ~2 sigma sqrt(C) for large C (nearly every pixel quadratic, no
robustness left) and at 1.345 sigma only for C = 1. Here the channels are allowed to be
correlated (RGB's three channels move together; projected features carry unequal
variance): the residual's second moments S (C x C) over the inlier-looking points give
the effective degrees of freedom nu = tr(S)^2 / tr(S^2) (Satterthwaite: a weighted sum of
chi-square_1 matched in mean and variance; nu = C for white noise, 1 for one shared
channel), and the threshold is the norm below which the same 82 % of Gaussian inliers
fall: delta^2 = median(e^2) x q_0.82(nu) / q_0.5(nu). For nu = 1 this is exactly Huber's
1.345 sigma.

Points leaving the view: the cost is a mean over a fixed point set per level, and a point
out of view is charged what it cost when last in view (`hold`), so a step cannot lower the
cost by pushing badly matching points out (a mean over the points in view could: a
plausible cause of runaway pairs). Two alternatives measured worse on 16 synthetic pairs at
10 cm and 6 degrees (intensities; success 0.94 with this rule): charging out-of-view points
a capped cost's maximum (cap at the 99.9 % quantile, weight 0 beyond) 0.62, and with a high
cap 0.19, since the true motion itself moves points out of view and a high charge pins
the estimate to keeping them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_SCALE = 1e-6  # floor of delta: an exact match (all residuals 0) must not divide by 0
Z_HUBER = 0.9192  # standard-normal quantile of 0.821 = P(|z| < 1.345): Huber's inlier share
INLIER_GATE = 3.0  # points with e above 3 x median(e) are left out of the second moments (outliers)


def chi2_quantile(nu: torch.Tensor, z: float) -> torch.Tensor:
    """Wilson-Hilferty's chi-square quantile for (real) nu degrees of freedom at normal quantile z.

    Within 4 % of the exact value for nu >= 1 and the quantiles used here (checked in the tests).
    """
    a = 2.0 / (9.0 * nu)
    return nu * (1 - a + z * a.sqrt()).clamp_min(0) ** 3


@dataclass(frozen=True)
class Scale:
    """A pair's robust scale for one level: (B,) Huber threshold `delta` on the residual norm e."""

    delta: torch.Tensor


def effective_dof(r: torch.Tensor, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, C, N) residuals, (B, N) norms and validity -> (B,) Satterthwaite degrees of freedom in [1, C]."""
    med = torch.nanmedian(torch.where(valid, e, torch.nan), dim=1).values.nan_to_num(1.0)  # (B,)
    m = (valid & (e <= INLIER_GATE * med[:, None])).to(r.dtype)  # (B, N)
    S = (r * m[:, None]) @ r.transpose(1, 2)  # (B, C, C)
    tr = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)
    nu = tr**2 / (S * S).sum(dim=(1, 2)).clamp_min(1e-30)
    return nu.nan_to_num(1.0).clamp(1.0, float(r.shape[1]))


def scale(r: torch.Tensor, e: torch.Tensor, valid: torch.Tensor) -> Scale:
    """The level's `Scale` from the residuals at its start ((B, C, N), norms (B, N), validity (B, N)).

    A pair without a valid point gets delta 1 (its cost is flagged elsewhere).
    """
    nu = effective_dof(r, e, valid)
    med2 = torch.nanmedian(torch.where(valid, e * e, torch.nan), dim=1).values.nan_to_num(1.0)  # (B,)
    unit = med2 / chi2_quantile(nu, 0.0)  # sigma^2, per degree of freedom
    return Scale((unit * chi2_quantile(nu, Z_HUBER)).sqrt().clamp_min(MIN_SCALE))


def weight(e: torch.Tensor, s: Scale) -> torch.Tensor:
    """IRLS weights rho'(e) / e: 1 inside delta, delta / e outside; (B, N)."""
    d = s.delta[:, None]
    return torch.where(e <= d, torch.ones_like(e), d / e.clamp_min(MIN_SCALE))


def rho(e: torch.Tensor, s: Scale) -> torch.Tensor:
    """Huber: e^2 / 2 inside delta, delta (e - delta / 2) outside; (B, N)."""
    d = s.delta[:, None]
    return torch.where(e <= d, 0.5 * e**2, d * (e - 0.5 * d))


def cost(e: torch.Tensor, inview: torch.Tensor, points: torch.Tensor, s: Scale, held: torch.Tensor) -> torch.Tensor:
    """Mean robust cost over each pair's fixed point set `points` (B, N); out-of-view points charged `held`; (B,).

    `held` (B, N) is each point's cost when it was last in view (`hold`): a step that
    pushes a point out of view neither gains nor loses by it, so the cost cannot be
    lowered by dropping badly matching points (the mean over the points in view could).
    The denominator is the fixed set's size.
    """
    charged = torch.where(inview, rho(e, s), held)  # (B, N)
    n = points.sum(dim=1).clamp_min(1)
    return (charged * points).sum(dim=1) / n


def hold(e: torch.Tensor, inview: torch.Tensor, s: Scale, held: torch.Tensor | None = None) -> torch.Tensor:
    """Each point's cost to charge while out of view: its own where in view, else `held`.

    With `held` None (a level's start) points out of view get the mean cost of those in
    view: neutral, neither drawing points into view nor pushing them out.
    """
    r = rho(e, s)
    if held is None:
        held = ((r * inview).sum(1, keepdim=True) / inview.sum(1, keepdim=True).clamp_min(1)).expand_as(r)
    return torch.where(inview, r, held)
