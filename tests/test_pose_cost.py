"""The pose solver's cost: robust scale for C channels, out-of-view rule, factorised normal equations, projection."""

from __future__ import annotations

import pytest
import torch

from pipeline.camera import NYU_KINECT
from pipeline.pose import cost, robust, warp
from pipeline.pose.features import project_pair


@pytest.mark.parametrize("nu", [1.0, 3.0, 16.0, 64.0])
@pytest.mark.parametrize("p", [0.5, 0.821, 0.95])
def test_chi2_quantile_is_close_to_the_exact_one(nu: float, p: float) -> None:
    from scipy.stats import chi2, norm

    approx = robust.chi2_quantile(torch.tensor(nu), float(norm.ppf(p))).item()
    assert approx == pytest.approx(chi2.ppf(p, nu), rel=0.04)


@pytest.mark.parametrize("C", [1, 3, 16, 32])
def test_huber_threshold_keeps_82_percent_of_gaussian_inliers_whatever_c(C: int) -> None:  # noqa: N803
    """Huber's k = 1.345 leaves 82 % of scalar Gaussian inliers quadratic; the scale keeps that share for C-vectors.

    The former rule, 1.345 x 1.4826 x median(|r|), put 100 % of 16-channel noise inside.
    """
    gen = torch.Generator().manual_seed(0)
    r = 0.1 * torch.randn(2, C, 20000, generator=gen)
    e, valid = r.norm(dim=1), torch.ones(2, 20000, dtype=torch.bool)
    s = robust.scale(r, e, valid)
    inside = (e <= s.delta[:, None]).float().mean().item()
    assert inside == pytest.approx(0.821, abs=0.02)
    if C == 1:
        assert s.delta[0].item() == pytest.approx(1.345 * 0.1, rel=0.04)
    # Three perfectly correlated channels are one degree of freedom, not three.
    shared = r[:, :1].expand(2, 3, 20000)
    assert robust.effective_dof(shared, shared.norm(dim=1), valid)[0].item() == pytest.approx(1.0, abs=1e-3)


def test_pushing_a_bad_point_out_of_view_does_not_lower_the_cost() -> None:
    """Mean over the points in view: dropping the worst point lowers it. Here the point keeps its last cost."""
    s = robust.Scale(torch.tensor([1.0]))
    points = torch.ones(1, 4, dtype=torch.bool)
    e = torch.tensor([[0.1, 0.2, 0.1, 5.0]])
    inview = points.clone()
    held = robust.hold(e, inview, s)
    before = robust.cost(e, inview, points, s, held)
    out = torch.tensor([[True, True, True, False]])  # the step pushed the 5.0 point out of view
    after = robust.cost(e, out, points, s, held)
    assert after.item() == pytest.approx(before.item())
    mean_in_view = (robust.rho(e, s) * out).sum() / out.sum()
    assert mean_in_view < before  # what the former cost would have rewarded


def test_factorised_normal_equations_equal_the_full_jacobians() -> None:
    gen = torch.Generator().manual_seed(4)
    B, C, h, w = 2, 5, 12, 16
    f_tgt, f_src = torch.randn(B, C, h, w, generator=gen), torch.randn(B, C, h, w, generator=gen)
    k = warp.level_intrinsics(NYU_KINECT.scaled(w, h), 1)
    depth = 1 + torch.rand(B, 1, h, w, generator=gen)
    lv = cost.prepare(f_tgt, f_src, depth, k, max_points=100, border=0)
    r = torch.randn(B, C, 100, generator=gen)
    wts = torch.rand(B, 100, generator=gen)
    H, g = cost.normal_equations(lv, r, wts)
    J = cost.full_jacobian(lv)  # (B, C, n, 6)
    H_ref = torch.einsum("bn,bcni,bcnj->bij", wts, J, J)
    g_ref = torch.einsum("bn,bcni,bcn->bi", wts, J, r)
    assert torch.allclose(H, H_ref, rtol=1e-4, atol=1e-3) and torch.allclose(g, g_ref, rtol=1e-4, atol=1e-4)


def test_pair_projection_gives_a_point_the_same_feature_in_both_frames() -> None:
    """The same raw feature in both frames stays the same after centring and projecting.

    The frames' contents differ: centring each image on its own mean, the former rule, made them differ.
    """
    gen = torch.Generator().manual_seed(5)
    f_tgt = torch.rand(1, 64, 8, 8, generator=gen)
    f_src = torch.rand(1, 64, 8, 8, generator=gen) + torch.linspace(0, 1, 64)[None, :, None, None]  # other content
    f_src[..., 3, 4] = f_tgt[..., 2, 2]  # the point seen in both
    t, s = project_pair(f_tgt, f_src, channels=16)
    assert t.shape == (1, 16, 8, 8) and torch.allclose(t.norm(dim=1), torch.ones(1, 8, 8), atol=1e-4)
    assert torch.allclose(t[..., 2, 2], s[..., 3, 4], atol=1e-5)
    own = [f - f.mean(dim=(2, 3), keepdim=True) for f in (f_tgt, f_src)]
    assert not torch.allclose(own[0][..., 2, 2], own[1][..., 3, 4], atol=1e-2)


def test_encoder_border_keeps_points_and_samples_off_the_map_edge() -> None:
    """CNN features see the zero padding at the map's edge: no target point there, no source sample from it."""
    gen = torch.Generator().manual_seed(6)
    h, w, border = 12, 16, 2
    f = torch.randn(1, 4, h, w, generator=gen)
    k = warp.level_intrinsics(NYU_KINECT.scaled(w, h), 1)
    lv = cost.prepare(f, f, torch.ones(1, 1, h, w), k, max_points=h * w, border=border)
    v, u = lv.X[0, :, 1] / lv.X[0, :, 2] * k[1] + k[3], lv.X[0, :, 0] / lv.X[0, :, 2] * k[0] + k[2]
    kept = lv.points[0]
    m = 1 + border  # the central difference's row and column, then the border
    assert kept.any() and (u[kept] >= m - 1e-4).all() and (u[kept] <= w - 1 - m + 1e-4).all()
    assert (v[kept] >= m - 1e-4).all() and (v[kept] <= h - 1 - m + 1e-4).all()
    _, inside = warp.sample(f, torch.tensor([[[1.0, 5.0], [2.0, 5.0], [13.0, 5.0], [13.5, 5.0]]]), border=2.0)
    assert inside.tolist() == [[False, True, True, False]]  # u in [2, 13] for a 16-wide map
