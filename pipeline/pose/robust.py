"""The robust cost: Huber on each pixel's feature-residual norm, with a scale set from the residuals.

Per pixel the residual is a C-vector r (source feature minus target feature); its norm
e = |r| is what the Huber function rho sees, so a pixel is one observation whatever C
is. The scale delta = k * 1.4826 * median(e) over the valid pixels of each pair, taken
once at the start of each pyramid level and held for the level (so costs compare
across iterations): 1.4826 * median is the Gaussian-consistent robust sigma, and k =
1.345 gives Huber's 95 % efficiency for Gaussian noise. Pixels with e > delta (occlusions,
specularities, depth errors) get weight delta / e in the iteratively reweighted
Gauss-Newton steps instead of 1.
"""

from __future__ import annotations

import torch

MAD_TO_SIGMA = 1.4826  # sigma of a Gaussian = 1.4826 x its median absolute deviation
MIN_SCALE = 1e-6  # floor of delta: an exact match (all residuals 0) must not divide by 0


def huber_scale(e: torch.Tensor, valid: torch.Tensor, k: float) -> torch.Tensor:
    """(B, N) residual norms and validity -> (B,) Huber thresholds delta (1 where a pair has no valid pixel)."""
    masked = torch.where(valid, e, torch.full_like(e, float("nan")))
    med = torch.nanmedian(masked, dim=1).values  # (B,), nan where nothing is valid
    delta = k * MAD_TO_SIGMA * torch.nan_to_num(med, nan=1.0)
    return delta.clamp_min(MIN_SCALE)


def huber_weight(e: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """IRLS weights rho'(e) / e: 1 inside delta, delta / e outside; (B, N) and (B,) -> (B, N)."""
    d = delta[:, None]
    return torch.where(e <= d, torch.ones_like(e), d / e.clamp_min(MIN_SCALE))


def huber_cost(e: torch.Tensor, valid: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Mean Huber cost over each pair's valid pixels, (B,).

    rho(e) = e^2 / 2 inside delta, delta (e - delta / 2) outside.
    """
    d = delta[:, None]
    rho = torch.where(e <= d, 0.5 * e**2, d * (e - 0.5 * d))  # (B, N)
    n = valid.sum(dim=1).clamp_min(1)
    return torch.where(valid, rho, torch.zeros_like(rho)).sum(dim=1) / n
