"""Eigen's scale-invariant loss against its pairwise form, masking, gradients, build_loss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pipeline.config import LossParams, ParamsError
from pipeline.losses import build_loss, edge_aware_smoothness, scale_invariant_loss, valid_mask


def _depths(b: int = 3, h: int = 6, w: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred, target, mask) in metres, float64; target has holes (0), a NaN and an inf."""
    g = torch.Generator().manual_seed(seed)
    pred = 0.5 + 9 * torch.rand(b, 1, h, w, generator=g, dtype=torch.float64)
    target = 0.5 + 9 * torch.rand(b, 1, h, w, generator=g, dtype=torch.float64)
    target[torch.rand(b, 1, h, w, generator=g) < 0.2] = 0.0
    target[0, 0, 0, 0], target[1, 0, 1, 1] = float("nan"), float("inf")
    mask = torch.rand(b, 1, h, w, generator=g) < 0.8
    return pred, target, mask


def _pairwise_reference(pred: torch.Tensor, target: torch.Tensor, lam: float, mask: torch.Tensor) -> float:
    """Per image: (1/2n^2) sum_ij (d_i - d_j)^2 + (1 - lam) mean(d)^2, then the mean over images."""
    losses = []
    for p, t, m in zip(pred, target, mask, strict=True):
        flat = zip(p.flatten().tolist(), t.flatten().tolist(), m.flatten().tolist(), strict=True)
        keep = [(pi, ti) for pi, ti, mi in flat if mi and ti > 0 and ti != float("inf")]  # NaN > 0 is False
        if not keep:
            continue
        d = [math.log(pi) - math.log(ti) for pi, ti in keep]
        n = len(d)
        pairwise = sum((di - dj) ** 2 for di, dj in itertools.product(d, d)) / (2 * n**2)
        losses.append(pairwise + (1 - lam) * (sum(d) / n) ** 2)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0])
def test_matches_pairwise_form(lam: float) -> None:
    pred, target, mask = _depths()
    loss = scale_invariant_loss(pred, target, lam, mask)
    assert loss.item() == pytest.approx(_pairwise_reference(pred, target, lam, mask), rel=1e-10)


def test_accepts_three_dim_inputs() -> None:
    pred, target, mask = _depths()
    four = scale_invariant_loss(pred, target, 0.5, mask)
    three = scale_invariant_loss(pred[:, 0], target[:, 0], 0.5, mask[:, 0])
    assert three.item() == pytest.approx(four.item(), rel=1e-6)


def test_lambda_one_is_scale_invariant_and_zero_is_not() -> None:
    pred, target, mask = _depths()
    si = scale_invariant_loss(pred, target, 1.0, mask)
    assert scale_invariant_loss(3.7 * pred, target, 1.0, mask).item() == pytest.approx(si.item(), rel=1e-6, abs=1e-9)
    l2 = scale_invariant_loss(pred, target, 0.0, mask)
    assert scale_invariant_loss(3.7 * pred, target, 0.0, mask).item() != pytest.approx(l2.item(), rel=1e-3)


def test_masked_pixels_have_no_effect() -> None:
    pred, target, mask = _depths()
    invalid = ~(mask & valid_mask(target))
    base = scale_invariant_loss(pred, target, 0.5, mask)
    pred2, target2 = pred.clone(), target.clone()
    junk = torch.tensor([1e-9, 1e9, 0.0, -1.0, float("nan")], dtype=pred.dtype)
    pred2[invalid] = junk[torch.arange(int(invalid.sum())) % len(junk)]  # would be NaN/inf in a log
    target2[mask.logical_not() & valid_mask(target)] = 123.0  # valid depth, but masked out by `mask`
    pred2.requires_grad_(True)
    loss = scale_invariant_loss(pred2, target2, 0.5, mask)
    assert loss.item() == pytest.approx(base.item(), rel=1e-12)
    loss.backward()
    assert torch.isfinite(pred2.grad).all() and (pred2.grad[invalid] == 0).all()


def test_empty_images_contribute_nothing_and_empty_batch_is_zero() -> None:
    pred, target, mask = _depths()
    target_partial = target.clone()
    target_partial[1] = 0.0  # image 1 has no valid pixel
    got = scale_invariant_loss(pred, target_partial, 0.5, mask)
    keep = torch.tensor([0, 2])
    ref = scale_invariant_loss(pred[keep], target[keep], 0.5, mask[keep])
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)

    p = pred.clone().requires_grad_(True)
    empty = scale_invariant_loss(p, torch.zeros_like(target), 0.5)
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert torch.isfinite(p.grad).all() and (p.grad == 0).all()


def test_gradients_finite_and_match_autograd_reference() -> None:
    pred, target, mask = _depths()
    p = pred.clone().requires_grad_(True)
    scale_invariant_loss(p, target, 0.5, mask).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda x: scale_invariant_loss(x, target, 0.5, mask), (pred.clone().requires_grad_(),)
    )


def test_lambda_out_of_range() -> None:
    pred, target, _ = _depths()
    for lam in (-0.1, 1.5):
        with pytest.raises(ParamsError, match=r"loss\.lambda.*\[0, 1\]"):
            scale_invariant_loss(pred, target, lam)
        with pytest.raises(ParamsError, match=r"loss\.lambda"):
            build_loss(LossParams(name="eigen", lam=lam, smoothness=0.0))


def test_build_loss_unknown_name() -> None:
    with pytest.raises(ParamsError, match="eigen | l2 | l2_smooth"):
        build_loss(LossParams(name="berhu", lam=0.5, smoothness=0.0))  # type: ignore[arg-type]


def test_build_loss_variants() -> None:
    pred, target, _ = _depths(b=2, h=8, w=8)
    image = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    eigen = build_loss(LossParams(name="eigen", lam=0.5, smoothness=0.0))(pred, target, image)
    assert eigen.item() == pytest.approx(scale_invariant_loss(pred, target, 0.5).item())
    l2 = build_loss(LossParams(name="l2", lam=0.5, smoothness=0.0))(pred, target, image)
    assert l2.item() == pytest.approx(scale_invariant_loss(pred, target, 0.0).item())
    smooth = build_loss(LossParams(name="l2_smooth", lam=0.5, smoothness=0.1))(pred, target, image)
    expected = l2.item() + 0.1 * edge_aware_smoothness(pred.log(), image).item()
    assert smooth.item() == pytest.approx(expected, rel=1e-6)
    assert smooth.item() > l2.item()


def test_smoothness_zero_for_constant_and_grows_with_noise() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 16, 16, generator=g)
    flat = torch.full((2, 1, 16, 16), 2.5).log()
    assert edge_aware_smoothness(flat, image).item() == 0.0
    noise = torch.randn(2, 1, 16, 16, generator=g)
    values = [edge_aware_smoothness(flat + s * noise, image).item() for s in (0.01, 0.1, 1.0)]
    assert values[0] < values[1] < values[2]
    # Scale-invariant: multiplying the depth by a constant shifts log depth only.
    assert edge_aware_smoothness(flat + noise + 2.0, image).item() == pytest.approx(values[2], rel=1e-5)


def test_smoothness_is_weaker_across_image_edges() -> None:
    log_depth = torch.zeros(1, 1, 8, 8)
    log_depth[..., 4:] = 1.0  # a depth edge between columns 3 and 4
    flat_image = torch.full((1, 3, 8, 8), 0.5)
    edge_image = flat_image.clone()
    edge_image[..., 4:] = 1.0  # an image edge at the same place
    assert edge_aware_smoothness(log_depth, edge_image) < edge_aware_smoothness(log_depth, flat_image)
