"""The pose solver's geometry: SE(3) (kornia), level intrinsics, warps, and the analytic Jacobians against autograd."""

from __future__ import annotations

import pytest
import torch

from pipeline.camera import NYU_KINECT
from pipeline.pose import se3, warp
from pipeline.pose.features import level_offsets, model_strides


def test_se3_exp_log_inverse_transform() -> None:
    gen = torch.Generator().manual_seed(0)
    xi = 0.3 * torch.randn(16, 6, generator=gen, dtype=torch.float64)
    T = se3.exp(xi)
    assert torch.allclose(se3.log(T), xi, atol=1e-9)
    assert torch.allclose(se3.inverse(T), torch.linalg.inv(T), atol=1e-12)
    assert torch.allclose(T[:, :3, :3] @ T[:, :3, :3].transpose(1, 2), torch.eye(3, dtype=torch.float64), atol=1e-12)
    X = torch.randn(16, 5, 3, generator=gen, dtype=torch.float64)
    homog = torch.cat([X, torch.ones(16, 5, 1, dtype=torch.float64)], -1) @ T.transpose(1, 2)
    assert torch.allclose(se3.transform(T, X), homog[..., :3])
    t_err, r_err = se3.pose_error(T, T)
    assert t_err.abs().max() < 1e-9 and r_err.abs().max() < 1e-4
    # The translation error is the metres between the two; the rotation error the angle.
    shifted = T.clone()
    shifted[:, :3, 3] += torch.tensor([0.0, 0.03, 0.04], dtype=torch.float64)
    assert torch.allclose(se3.pose_error(shifted, T)[0], torch.full((16,), 0.05, dtype=torch.float64))
    turn = se3.exp(torch.tensor([[0, 0, 0, 0, 0, 0.1]], dtype=torch.float64))
    assert se3.pose_error(T[:1] @ turn, T[:1])[1].item() == pytest.approx(0.1 * 180 / torch.pi, rel=1e-6)


@pytest.mark.parametrize("size", [0.0, 1e-5, 5e-3, 0.02, 0.5, 3.0])
def test_closed_form_exp_matches_kornia(size: float) -> None:
    from kornia.geometry.liegroup import Se3

    xi = size * torch.randn(32, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(se3.exp(xi), Se3.exp(xi).matrix(), atol=1e-12)
    assert torch.allclose(se3.exp(xi.float()), Se3.exp(xi).matrix().float(), atol=2e-6)


def test_exp_is_finite_and_exact_at_identity_in_float32() -> None:
    T = se3.exp(torch.zeros(3, 6))
    assert T.dtype == torch.float32 and torch.equal(T, torch.eye(4).expand(3, 4, 4))


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_level_intrinsics_are_the_scaled_camera(stride: int) -> None:
    K = NYU_KINECT.scaled(160, 128)
    k = warp.level_intrinsics(K, stride)
    ref = K.scaled(160 // stride, 128 // stride)
    assert torch.allclose(k, torch.tensor([ref.fx, ref.fy, ref.cx, ref.cy], dtype=torch.float32))


def test_level_intrinsics_follow_the_pixel_grid_offset() -> None:
    """A strided conv centres level pixel k on input pixel s k: principal point cx / s, not (cx + 0.5) / s - 0.5."""
    K = NYU_KINECT.scaled(160, 128)
    k = warp.level_intrinsics(K, 8, offset=0.0)
    assert k[2].item() == pytest.approx(K.cx / 8) and k[3].item() == pytest.approx(K.cy / 8)
    assert warp.level_intrinsics(K, 8)[2].item() == pytest.approx((K.cx - 3.5) / 8)


def test_back_project_then_project_returns_the_pixel_grid() -> None:
    k = warp.level_intrinsics(NYU_KINECT.scaled(16, 12), 1)
    depth = 0.5 + torch.rand(2, 1, 12, 16)
    depth[0, 0, 3, 4] = 0  # no depth: invalid
    X, valid = warp.back_project(depth, k)
    uv, front = warp.project(X, k)
    v, u = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    assert torch.allclose(uv[1], torch.stack([u.flatten(), v.flatten()], -1), atol=1e-4)
    assert not valid[0, 3 * 16 + 4] and valid.sum() == 2 * 12 * 16 - 1 and front[1].all()


def test_sample_reads_pixel_centres_and_flags_outside() -> None:
    feat = torch.arange(12.0).reshape(1, 1, 3, 4)  # value = 4 v + u
    uv = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.5, 0.5], [3.5, 0.0], [-0.1, 1.0]]])
    f, inside = warp.sample(feat, uv)
    assert torch.allclose(f[0, 0, :3], torch.tensor([0.0, 11.0, 3.5]))
    assert inside.tolist() == [[True, True, True, False, False]]


def test_sample_depth_takes_one_real_surface_and_drops_edge_cells() -> None:
    """An occlusion edge (1 m in front of 3 m) inside a cell: no depth there, never the 2 m no surface has."""
    d = torch.full((1, 1, 4, 8), 3.0)
    d[..., :, :3] = 1.0  # the cell of columns 2-3 straddles the edge
    d[..., 0, 4] = 0.0  # a hole in the cell of columns 4-5, its centre pixel (1, 5) still has depth
    out = warp.sample_depth(d, 2, (2, 4))  # cell k: pixels [2k, 2k + 2), centre pixel 2k + 1
    assert out[0, 0, 0].tolist() == [1.0, 0.0, 3.0, 3.0]
    # A strided-conv grid (offset 0) centres level pixel k on input pixel 2k.
    # Cells [2k - 1, 2k + 1): columns 1-2 lie on one surface; pixel (0, 4) is the hole.
    assert warp.sample_depth(d, 2, (2, 4), offset=0.0)[0, 0, 0].tolist() == [1.0, 1.0, 0.0, 3.0]


def test_warp_jacobian_matches_autograd() -> None:
    """The warp Jacobian d pi(exp(xi) X) / d xi at 0, analytic against autograd through kornia's exp, float64."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    X[..., 2] = X[..., 2].abs() + 0.5  # in front of the camera
    k = torch.tensor([500.0, 480.0, 320.0, 240.0], dtype=torch.float64)
    analytic = warp.warp_jacobian(X, k)  # (2, 7, 2, 6)

    def uv(xi: torch.Tensor) -> torch.Tensor:
        return warp.project(se3.transform(se3.exp(xi[None]).expand(2, 4, 4), X), k)[0]

    auto = torch.autograd.functional.jacobian(uv, torch.zeros(6, dtype=torch.float64))  # (2, 7, 2, 6)
    assert torch.allclose(analytic, auto, atol=1e-8, rtol=1e-8)


def test_feature_jacobian_matches_autograd() -> None:
    """The full inverse-compositional Jacobian grad F . d pi / d X . generators against autograd through sampling.

    Each channel is affine in (u, v), so the central differences and the bilinear
    interpolant have the same, exact gradient: any error is in the chain itself.
    """
    gen = torch.Generator().manual_seed(2)
    h, w, C = 12, 16, 3
    coef = torch.randn(C, 3, generator=gen, dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    feat = (coef[:, :1, None] * u + coef[:, 1:2, None] * v + coef[:, 2:, None])[None]  # (1, C, h, w)
    k = warp.level_intrinsics(NYU_KINECT.scaled(w, h), 1).double()
    depth = 1.0 + torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64)
    X, _ = warp.back_project(depth, k)
    gu, gv, interior = warp.image_gradient(feat)
    analytic = warp.feature_jacobian(gu, gv, warp.warp_jacobian(X, k))[0][:, interior]  # (C, n, 6)

    def sampled(xi: torch.Tensor) -> torch.Tensor:
        uv, _ = warp.project(se3.transform(se3.exp(xi[None]), X), k)
        return warp.sample(feat, uv)[0][0][:, interior]  # (C, n)

    auto = torch.autograd.functional.jacobian(sampled, torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(analytic, auto, atol=1e-8)
    assert analytic.abs().max() > 1.0  # not a vacuous comparison of zeros


def test_model_strides_of_both_networks() -> None:
    from pipeline.model.build import build_model
    from tests.conftest import model_params

    assert model_strides(build_model(model_params(depth=3))) == (1, 2, 4, 8)

    class Backbone:  # what BackboneUNet exposes: its timm reductions
        reductions = [2, 4, 8, 16, 32]

    assert model_strides(Backbone()) == (2, 4, 8, 16, 32)  # type: ignore[arg-type]


def test_level_offsets_of_pooling_and_strided_convs() -> None:
    """The U-Net's max-pool centres level pixel k on s k + (s - 1) / 2; a ResNet's strided convs on s k."""
    from pipeline.model.backbone import BackboneUNet
    from pipeline.model.build import build_model
    from tests.conftest import model_params

    assert level_offsets(build_model(model_params(depth=3))) == (0.0, 0.5, 1.5, 3.5)
    resnet = BackboneUNet(model_params(encoder="resnet18"))
    assert level_offsets(resnet) == (0.0,) * 5
