"""The solver's geometric (depth) term: its Jacobian, its validity, and what it adds to the photometric cost."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.camera import NYU_KINECT
from pipeline.pose import AlignOptions, align, extract, geometric, robust, se3
from pipeline.pose.estimate import Variant, variant_options
from pipeline.pose.pairs import PairBatch, synthetic_pairs
from pipeline.pose.se3 import pose_error
from pipeline.pose.solver import prepare_target

SIZE = (96, 128)
K = NYU_KINECT.scaled(SIZE[1], SIZE[0])
GEO = AlignOptions(depth_weight=1.0)


@pytest.fixture(scope="module")
def pairs() -> PairBatch:
    """Three rooms, 3 cm and 2 degrees between target and source."""
    return synthetic_pairs([0, 1, 2], SIZE, translation_m=0.03, rotation_deg=2.0)


def _plane(h: int, w: int) -> torch.Tensor:
    """(1, 1, h, w) depth of a tilted plane: its inverse depth is affine in the pixel, so bilinear sampling is exact."""
    v, u = torch.meshgrid(torch.arange(h).double(), torch.arange(w).double(), indexing="ij")
    return (1.0 / (0.5 + 0.004 * u + 0.006 * v))[None, None]


def test_the_jacobian_is_the_derivative_of_the_residual() -> None:
    """Central differences of r_z(T exp(delta)) against J, on a map where sampling is exact (float64)."""
    h, w = 30, 40
    k = torch.tensor([30.0, 30.0, 19.5, 14.5], dtype=torch.float64)
    d = _plane(h, w)
    term = geometric.prepare(d, d, k, max_points=100)
    T = se3.exp(torch.tensor([[0.02, -0.01, 0.03, 0.01, -0.02, 0.015]], dtype=torch.float64))
    ev = geometric.evaluate(term, T)
    J = geometric.jacobian(term, ev)
    eps, numeric = 1e-5, torch.zeros_like(J)
    for i in range(6):
        delta = torch.zeros(1, 6, dtype=torch.float64)
        delta[0, i] = eps
        ahead, behind = geometric.evaluate(term, T @ se3.exp(delta)), geometric.evaluate(term, T @ se3.exp(-delta))
        numeric[..., i] = (ahead.r - behind.r) / (2 * eps)
    m = ev.inview[0]
    assert m.sum() > 40  # most of the grid's points stay in view
    assert torch.allclose(J[0][m], numeric[0][m], atol=1e-7), (J[0][m] - numeric[0][m]).abs().max()
    assert J.abs().max() > 0.1  # not trivially zero
    assert ev.r[0][m].abs().max() > 1e-3  # and the motion really moves the residual


def _plane_seen(n: torch.Tensor, k: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1, 1, h, w) depth of the plane n^T X = 1 (camera frame) seen through intrinsics k."""
    v, u = torch.meshgrid(torch.arange(h).double(), torch.arange(w).double(), indexing="ij")
    rho = n[0] * (u - k[2]) / k[0] + n[1] * (v - k[3]) / k[1] + n[2]  # inverse depth: n^T (x/z, y/z, 1)
    return (1.0 / rho)[None, None]


def test_the_residual_is_zero_at_the_true_motion() -> None:
    """A plane seen from two poses: at the true motion the moved points' inverse depth is the source's."""
    h, w = 30, 40
    k = torch.tensor([30.0, 30.0, 19.5, 14.5], dtype=torch.float64)
    n = torch.tensor([0.05, 0.1, 0.4], dtype=torch.float64)  # 2.5 m away, tilted
    T = se3.exp(torch.tensor([[0.05, -0.02, 0.04, 0.02, -0.03, 0.01]], dtype=torch.float64))
    R, t = T[0, :3, :3], T[0, :3, 3]
    n_src = R @ n / (1 + (R @ n) @ t)  # the same plane in the source frame: X_src = R X + t
    term = geometric.prepare(_plane_seen(n, k, h, w), _plane_seen(n_src, k, h, w), k, max_points=h * w)
    ev = geometric.evaluate(term, T)
    assert ev.inview.sum() > 0.6 * h * w and ev.r.abs().max() < 1e-7, (ev.inview.sum(), ev.r.abs().max())
    off = geometric.evaluate(term, torch.eye(4, dtype=torch.float64)[None])
    assert off.r.abs().max() > 1e-3  # at the identity it is not


def test_the_source_map_leaves_out_holes_and_occlusion_edges() -> None:
    d = torch.full((1, 1, 10, 12), 2.0)
    d[..., 4, 3] = 0  # a hole
    d[..., :, 8:] = 4.0  # an occlusion edge between columns 7 and 8
    valid = geometric.source_map(d)[0, 3]
    assert valid[4, 3] == 0 and valid[3, 3] == 0 and valid[4, 2] == 0  # the hole and its neighbours
    assert (valid[:, 7:9] == 0).all()  # both sides of the edge
    assert (valid[0] == 0).all() and (valid[:, -1] == 0).all()  # no neighbour beyond the map
    assert valid[6, 4] == 1 and valid[6, 10] == 1
    assert geometric.source_map(d)[0, 0, 6, 4].item() == pytest.approx(0.5)


def test_depth_alone_recovers_the_motion_of_a_textureless_scene(pairs: PairBatch) -> None:
    """A uniform grey image gives the photometric term nothing to align; the depth images still do."""
    grey = torch.full_like(pairs.rgb_tgt, 0.5)
    tgt, src = extract(None, grey, "rgb", GEO.strides), extract(None, grey, "rgb", GEO.strides)
    photometric = align(tgt, src, pairs.depth_tgt, K)
    hybrid = align(tgt, src, pairs.depth_tgt, K, options=GEO, depth_src=pairs.depth_src)
    t0 = pose_error(photometric.T, pairs.T)[0]
    t_err, r_err = pose_error(hybrid.T, pairs.T)
    assert (t0 > 0.025).all(), t0  # the photometric solve stays near its start, 3 cm off
    assert (t_err < 0.01).all() and (r_err < 0.5).all(), (t_err, r_err)


@pytest.mark.parametrize("finest", [False, True])
def test_the_term_sits_on_the_coarser_levels_unless_asked_for_at_the_finest(pairs: PairBatch, finest: bool) -> None:
    opts = dataclasses.replace(GEO, depth_finest=finest)
    tgt = extract(None, pairs.rgb_tgt, "rgb", opts.strides)
    prepared = prepare_target(tgt, pairs.depth_tgt, K, opts)
    assert [lv.geo is not None for lv in prepared.levels] == [finest, True, True, True]
    src = extract(None, pairs.rgb_src, "rgb", opts.strides)
    res = align(tgt, src, pairs.depth_tgt, K, options=opts, depth_src=pairs.depth_src)
    t_err, r_err = pose_error(res.T, pairs.T)
    assert (t_err < 0.016).all() and (r_err < 0.4).all() and res.converged.all(), (t_err, r_err)


def test_weight_zero_is_the_photometric_solve_and_a_prepared_target_matches(pairs: PairBatch) -> None:
    tgt = extract(None, pairs.rgb_tgt, "rgb", GEO.strides)
    src = extract(None, pairs.rgb_src, "rgb", GEO.strides)
    plain = align(tgt, src, pairs.depth_tgt, K)
    assert torch.equal(plain.T, align(tgt, src, pairs.depth_tgt, K, depth_src=pairs.depth_src).T)
    hybrid = align(tgt, src, pairs.depth_tgt, K, options=GEO, depth_src=pairs.depth_src)
    assert not torch.equal(plain.T, hybrid.T)
    prepared = prepare_target(tgt, pairs.depth_tgt, K, GEO)
    reused = align(tgt, src, pairs.depth_tgt, K, options=GEO, prepared=prepared, depth_src=pairs.depth_src)
    assert torch.equal(hybrid.T, reused.T) and torch.equal(hybrid.status, reused.status)


def test_bad_use_is_refused(pairs: PairBatch) -> None:
    tgt = extract(None, pairs.rgb_tgt, "rgb", GEO.strides)
    with pytest.raises(ValueError, match="depth_src"):
        align(tgt, tgt, pairs.depth_tgt, K, options=GEO)
    with pytest.raises(ValueError, match="depth_src is"):
        align(tgt, tgt, pairs.depth_tgt, K, options=GEO, depth_src=pairs.depth_src[:, :, :10])
    with pytest.raises(ValueError, match="depth_weight"):
        AlignOptions(depth_weight=-1.0)
    plain = prepare_target(tgt, pairs.depth_tgt, K)
    with pytest.raises(ValueError, match="other depth_weight"):
        align(tgt, tgt, pairs.depth_tgt, K, options=GEO, prepared=plain, depth_src=pairs.depth_src)
    assert dataclasses.replace(GEO, depth_weight=0.0) == AlignOptions()


def test_only_sensor_depth_variants_use_the_term() -> None:
    """Two frames' predicted depths agree too little for the term to help (docs/pose.md): they align photometrically."""
    assert variant_options(GEO, Variant("rgb", "sensor")).depth_weight == 1.0
    assert variant_options(GEO, Variant("encoder", "sensor", "untrained")).depth_weight == 1.0
    assert variant_options(GEO, Variant("encoder", "predicted")).depth_weight == 0.0


def test_vanishing_depth_residuals_do_not_let_the_term_swamp_the_photometric_one(pairs: PairBatch) -> None:
    """Residuals that are all 0 at a level's start (quantised depth often repeats: here the same image twice).

    Whitened by its own scale (~0 there) the term would outweigh the photometric one ~1e9
    times; its scale is floored at `geometric.MIN_SCALE`, the depth quantisation's, instead.
    """
    from pipeline.pose import solver

    tgt = extract(None, pairs.rgb_tgt, "rgb", GEO.strides)
    src = extract(None, pairs.rgb_src, "rgb", GEO.strides)
    prepared = prepare_target(tgt, pairs.depth_tgt, K, GEO)
    lv = prepared.level(1, src, pairs.depth_tgt)
    ev = solver._evaluate(lv, torch.eye(4).expand(3, 4, 4))
    assert ev.geo is not None and ev.geo.inview.any() and ev.geo.r.abs().max() < 1e-5  # float rounding only
    raw = robust.scale(ev.geo.r[:, None], ev.geo.e, ev.geo.inview).delta
    assert (raw < geometric.MIN_SCALE).all()  # what the term's own scale would be: the floor is what holds it
    sc = solver._scales(lv, ev, GEO)
    assert sc.depth is not None and sc.kappa is not None
    assert torch.equal(sc.depth.delta, torch.full_like(raw, geometric.MIN_SCALE))
    assert torch.allclose(sc.kappa, GEO.depth_weight * (sc.photo.delta / geometric.MIN_SCALE) ** 2)


def test_a_pair_given_one_depth_image_twice_aligns_photometrically(pairs: PairBatch) -> None:
    """Two frames sharing a depth image (a dropped depth frame) say nothing of the motion: their term is off."""
    tgt = extract(None, pairs.rgb_tgt[:1], "rgb", GEO.strides)
    src = extract(None, pairs.rgb_src[:1], "rgb", GEO.strides)
    depth = pairs.depth_tgt[:1]
    shared = align(tgt, src, depth, K, options=GEO, depth_src=depth.clone())
    plain = align(tgt, src, depth, K)
    own = align(tgt, src, depth, K, options=GEO, depth_src=pairs.depth_src[:1])
    assert torch.equal(shared.T, plain.T)  # the photometric solve, to the bit
    assert not torch.equal(own.T, plain.T)  # where the images differ, the term is on
