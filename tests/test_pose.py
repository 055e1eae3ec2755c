"""The pose solver on synthetic pairs: recovers known motions, batches, flags hopeless pairs, honours init."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from pipeline.camera import NYU_KINECT
from pipeline.model.build import build_model
from pipeline.pose import STATUS, AlignOptions, Pyramid, align, extract, untrained_copy
from pipeline.pose.pairs import PairBatch, synthetic_pairs
from pipeline.pose.se3 import pose_error
from pipeline.pose.solver import prepare_target
from tests.conftest import model_params

SIZE = (96, 128)
K = NYU_KINECT.scaled(SIZE[1], SIZE[0])
OPTS = AlignOptions()


@pytest.fixture(scope="module")
def pairs() -> PairBatch:
    """Three rooms, 3 cm and 2 degrees between target and source."""
    return synthetic_pairs([0, 1, 2], SIZE, translation_m=0.03, rotation_deg=2.0)


@pytest.fixture(scope="module")
def tiny_encoder() -> torch.nn.Module:
    """An untrained small U-Net (8 channels, depth 3: strides 1 to 8), fixed seed."""
    torch.manual_seed(0)
    return build_model(model_params(base_channels=8, depth=3)).eval()


def run(pairs: PairBatch, model=None, kind="rgb", init=None, opts=OPTS, depth=None, src=None):
    """Extracts both pyramids and aligns."""
    tgt = extract(model, pairs.rgb_tgt, kind, opts.strides)
    source = extract(model, pairs.rgb_src if src is None else src, kind, opts.strides)
    return align(tgt, source, pairs.depth_tgt if depth is None else depth, K, init, opts)


def test_rgb_with_sensor_depth_recovers_the_motion(pairs: PairBatch) -> None:
    res = run(pairs)
    t_err, r_err = pose_error(res.T, pairs.T)
    t0, r0 = pose_error(torch.eye(4).expand(3, 4, 4), pairs.T)
    assert (t0 > 0.029).all() and (r0 > 1.9).all()  # the start really is 3 cm and 2 degrees off
    # Measured 4, 4 and 13 mm, 0.04-0.25 degrees: at 96x128 (fx 104 px) 5 mm of sideways
    # motion at 3 m is 0.2 px; the point-sampled renders' aliasing bounds it (docs/pose.md).
    assert (t_err < 0.016).all() and t_err.mean() < 0.01, t_err
    assert (r_err < 0.4).all(), r_err
    assert res.converged.all() and (res.status == 0).all()
    assert (res.valid_fraction > 0.5).all() and (res.iterations > 0).all() and torch.isfinite(res.residual).all()


def test_untrained_encoder_features_recover_the_motion(pairs: PairBatch, tiny_encoder) -> None:
    res = run(pairs, tiny_encoder, "encoder")
    t_err, r_err = pose_error(res.T, pairs.T)
    # Measured 2, 10 and 24 mm (the last was 15 mm with per-image centring: docs/pose.md).
    assert t_err.median() < 0.5 * 0.03 and (t_err < 0.9 * 0.03).all(), t_err
    assert (r_err < 0.5 * 2.0).all(), r_err


def test_a_pair_stopped_by_the_damping_limit_is_not_converged(pairs: PairBatch) -> None:
    """Steps damped to nothing stop a pair at lambda's limit: flagged `damping_limit`, not `converged`."""
    near = pairs.T.clone()
    near[:, :3, 3] += 0.005  # 9 mm from the truth: a low residual, but an undamped step far above step_tol
    res = run(pairs, init=near, opts=AlignOptions(damping=1e6))
    assert not res.converged.any() and all(STATUS[s] == "damping_limit" for s in res.status.tolist())


def test_batched_equals_one_by_one(pairs: PairBatch) -> None:
    batched = run(pairs)
    for i in range(3):
        one = PairBatch(*(getattr(pairs, f.name)[i : i + 1] for f in dataclasses.fields(pairs)))
        single = run(one)
        assert torch.allclose(single.T[0], batched.T[i], atol=1e-4)
        assert single.iterations[0] == batched.iterations[i] and single.status[0] == batched.status[i]


def test_identical_frames_stay_at_the_identity(pairs: PairBatch) -> None:
    res = run(pairs, src=pairs.rgb_tgt)
    t_err, r_err = pose_error(res.T, torch.eye(4).expand(3, 4, 4))
    assert (t_err < 1e-4).all() and (r_err < 1e-2).all() and res.converged.all()
    assert (res.residual_ratio < 1e-6).all()


def test_noise_source_is_flagged_with_a_finite_pose(pairs: PairBatch) -> None:
    noise = torch.rand(pairs.rgb_src.shape, generator=torch.Generator().manual_seed(0))
    res = run(pairs, src=noise)
    assert not res.converged.any() and torch.isfinite(res.T).all()
    # Residual energy above the target features' variance, or driven out of view (then back at the init).
    assert all(STATUS[s] in ("high_residual", "few_valid") for s in res.status.tolist()), res.status


def test_no_valid_depth_falls_back_to_the_init(pairs: PairBatch) -> None:
    init = pairs.T.clone()
    init[:, :3, 3] += 0.05
    depth = pairs.depth_tgt.clone()
    depth[1] = 0  # the middle pair has no depth at all
    depth[2] = float("nan")
    init[2] = float("nan")  # a broken init as well: the identity stands in for it
    res = run(pairs, init=init, depth=depth)
    assert res.converged.tolist() == [True, False, False]
    assert [STATUS[s] for s in res.status[1:].tolist()] == ["few_valid", "few_valid"]
    assert torch.equal(res.T[1], init[1]) and torch.equal(res.T[2], torch.eye(4)) and torch.isfinite(res.T).all()


def test_init_is_honoured(pairs: PairBatch) -> None:
    """The solve starts at `init`: from the truth it stays there; with steps damped away it returns `init`."""
    from_truth = run(pairs, init=pairs.T)
    t_err, r_err = pose_error(from_truth.T, pairs.T)
    assert (t_err < 0.016).all() and (r_err < 0.4).all() and from_truth.converged.all()
    frozen = AlignOptions(damping=1e6)  # steps damped to nothing: the result is wherever the solve started
    offset = pairs.T.clone()
    offset[:, :3, 3] += torch.tensor([0.0, 0.0, 0.2])  # 20 cm along the optical axis
    stuck = run(pairs, init=offset, opts=frozen)
    t_err, r_err = pose_error(stuck.T, offset)
    assert (t_err < 1e-3).all() and (r_err < 0.05).all(), (t_err, r_err)
    assert not stuck.converged.any()
    # An init far outside the basin ends elsewhere than the identity's solve: it was used.
    far = pairs.T.clone()
    far[:, :3, 3] += 0.4
    assert not torch.allclose(run(pairs, init=far).T, run(pairs).T, atol=1e-2)


def test_success_falls_with_the_gap() -> None:
    """Intensity alignment from the identity: success (< 2 cm and < 1 degree) at a small gap >= at a large gap."""
    seeds = [3, 4, 5, 6]
    rates = []
    for t, r in [(0.02, 1.0), (0.25, 15.0)]:
        p = synthetic_pairs(seeds, SIZE, translation_m=t, rotation_deg=r)
        t_err, r_err = pose_error(run(p).T, p.T)
        rates.append(((t_err < 0.02) & (r_err < 1.0)).float().mean().item())
    assert rates[0] >= rates[1] and rates[0] >= 0.75 and rates[1] < 1.0, rates


def test_extract_levels_and_errors(tiny_encoder) -> None:
    rgb = torch.rand(2, 3, 32, 48)
    enc = extract(tiny_encoder, rgb, "encoder", (2, 4, 16))
    assert enc.strides == (2, 4) and [f.shape[1:] for f in enc.levels] == [(16, 16, 24), (32, 8, 12)]
    norms = enc.levels[0].norm(dim=1)
    assert torch.allclose(norms[norms > 0.5], torch.ones(()), atol=1e-4)  # unit vectors per pixel
    img = extract(None, rgb, "rgb", (1, 8))
    assert img.strides == (1, 8) and img.levels[1].shape == (2, 1, 4, 6)  # luminance, one channel
    with pytest.raises(ValueError, match="need the depth network"):
        extract(None, rgb, "encoder", (1,))
    with pytest.raises(ValueError, match="unknown feature kind"):
        extract(None, rgb, "sift", (1,))
    with pytest.raises(ValueError, match="none of the strides"):
        extract(tiny_encoder, rgb, "encoder", (32,))


def test_untrained_copy_is_the_same_architecture_with_fresh_seeded_weights(tiny_encoder) -> None:
    trained = build_model(model_params(base_channels=8, depth=3))
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # "training"
    a, b = untrained_copy(trained, seed=3), untrained_copy(trained, seed=3)
    state_a, state_b, state_t = a.state_dict(), b.state_dict(), trained.state_dict()
    assert state_a.keys() == state_t.keys() and not a.training
    assert all(torch.equal(state_a[n], state_b[n]) for n in state_a)
    assert not torch.equal(state_a["stem.0.weight"], state_t["stem.0.weight"])
    assert torch.equal(a.rgb_mean, trained.rgb_mean)


def test_mismatched_inputs_are_refused(pairs: PairBatch) -> None:
    tgt, src = extract(None, pairs.rgb_tgt, "rgb", (1, 2)), extract(None, pairs.rgb_src, "rgb", (1, 2))
    with pytest.raises(ValueError, match="depth_tgt"):
        align(tgt, src, pairs.depth_tgt[..., ::2, ::2], K)
    with pytest.raises(ValueError, match="intrinsics"):
        align(tgt, src, pairs.depth_tgt, NYU_KINECT)
    with pytest.raises(ValueError, match="differ"):
        align(tgt, extract(None, pairs.rgb_src, "rgb", (1,)), pairs.depth_tgt, K)


def test_point_budget_keeps_a_level_share_of_a_larger_frame() -> None:
    """480x640's finest level gets 4x 240x320's points (a fixed budget was less accurate); the rest keep it."""
    from pipeline.pose.solver import point_budget

    assert point_budget((480, 640), OPTS) == 4 * OPTS.max_points
    assert point_budget((480, 640), OPTS, finest=False) == OPTS.max_points
    assert point_budget((240, 320), OPTS) == point_budget((96, 128), OPTS) == OPTS.max_points


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="iterations"):
        AlignOptions(iterations=0)
    with pytest.raises(ValueError, match="strides"):
        AlignOptions(strides=(3,))


@pytest.mark.cuda
def test_cuda_matches_cpu(pairs: PairBatch, tiny_encoder) -> None:
    """The same code on both devices: poses within 2 mm and 0.1 degree (summation order and cuDNN's TF32 differ)."""
    dev = PairBatch(*(getattr(pairs, f.name).cuda() for f in dataclasses.fields(pairs)))
    for model, kind in [(None, "rgb"), (tiny_encoder, "encoder")]:
        cpu = run(pairs, model, kind)
        gpu = run(dev, None if model is None else copy.deepcopy(model).cuda(), kind)
        assert gpu.T.device.type == "cuda" and torch.isfinite(gpu.T).all()
        t_diff, r_diff = pose_error(gpu.T.cpu(), cpu.T)
        assert (t_diff < 2e-3).all() and (r_diff < 0.1).all(), (kind, t_diff, r_diff)


def test_extract_with_depth_is_one_pass_of_extract_and_forward(tiny_encoder) -> None:
    from pipeline.pose import extract_with_depth

    rgb = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    pyramid, depth = extract_with_depth(tiny_encoder, rgb, (1, 4))
    alone = extract(tiny_encoder, rgb, "encoder", (1, 4))
    assert pyramid.strides == alone.strides == (1, 4)
    assert all(torch.equal(a, b) for a, b in zip(pyramid.levels, alone.levels, strict=True))
    with torch.no_grad():
        assert torch.allclose(depth, tiny_encoder(rgb))


def test_pyramid_take_and_cat_pair_up_a_sequence(pairs: PairBatch) -> None:
    """A sequence's frames extracted in chunks, then consecutive pairs aligned in one batch."""
    frames = torch.cat([pairs.rgb_tgt[:1], pairs.rgb_src[:1], pairs.rgb_tgt[1:2]])  # (3, 3, H, W)
    chunks = [extract(None, frames[:2], "rgb", OPTS.strides), extract(None, frames[2:], "rgb", OPTS.strides)]
    seq = Pyramid.cat(chunks)
    whole = extract(None, frames, "rgb", OPTS.strides)
    assert all(torch.allclose(a, b) for a, b in zip(seq.levels, whole.levels, strict=True))
    tgt, src = seq.take(slice(0, 1)), seq.take(slice(1, 2))
    res = align(tgt, src, pairs.depth_tgt[:1], K)
    assert torch.equal(res.T, run(PairBatch(*(getattr(pairs, f.name)[:1] for f in dataclasses.fields(pairs)))).T)
    with pytest.raises(ValueError, match="differ"):
        Pyramid.cat([whole, extract(None, frames, "rgb", (1, 2))])


def test_a_prepared_target_aligns_exactly_as_the_unprepared_one(pairs: PairBatch) -> None:
    """`prepare_target` once, several sources: intensities give the same results as preparing with each."""
    tgt = extract(None, pairs.rgb_tgt, "rgb", OPTS.strides)
    prepared = prepare_target(tgt, pairs.depth_tgt, K, OPTS)
    for src_rgb in (pairs.rgb_src, pairs.rgb_tgt.flip(-1)):
        src = extract(None, src_rgb, "rgb", OPTS.strides)
        plain, reused = align(tgt, src, pairs.depth_tgt, K), align(tgt, src, pairs.depth_tgt, K, prepared=prepared)
        assert torch.equal(plain.T, reused.T) and torch.equal(plain.status, reused.status)
    other = extract(None, pairs.rgb_src, "rgb", OPTS.strides)
    with pytest.raises(ValueError, match="another target"):
        align(other, other, pairs.depth_tgt, K, prepared=prepared)


def test_a_prepared_encoder_target_projects_every_source_with_its_own_map(pairs: PairBatch, tiny_encoder) -> None:
    """Encoder levels prepared once use the target's projection for every source: as accurate as the pair's own."""
    tgt = extract(tiny_encoder, pairs.rgb_tgt, "encoder", OPTS.strides)
    src = extract(tiny_encoder, pairs.rgb_src, "encoder", OPTS.strides)
    prepared = prepare_target(tgt, pairs.depth_tgt, K, OPTS)
    assert all(p is not None for p in prepared.projections)
    lv = prepared.level(0, tgt)  # the target against itself: the same map on both sides
    assert torch.equal(lv.f_src, prepared.levels[0].f_src)
    own = pose_error(align(tgt, src, pairs.depth_tgt, K).T, pairs.T)[0]
    reused = align(tgt, src, pairs.depth_tgt, K, prepared=prepared)
    t_err, r_err = pose_error(reused.T, pairs.T)
    # The pair's projection measured 2, 10 and 24 mm here (test_untrained_encoder_features_recover_the_motion).
    assert t_err.median() < 0.5 * 0.03 and (t_err < 0.9 * 0.03).all() and (r_err < 1.0).all(), (t_err, own)
    still = align(tgt, tgt, pairs.depth_tgt, K, prepared=prepared)
    assert (pose_error(still.T, torch.eye(4).expand(3, 4, 4))[0] < 1e-3).all()


@pytest.mark.parametrize("bf16", [False, True])
def test_encoder_features_match_float32_in_either_precision(monkeypatch, tiny_encoder, bf16: bool) -> None:
    """Where the device has bf16 units the encoder runs in bf16: the maps come back float32 and close to float32's."""
    import pipeline.pose.features as features

    rgb = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(features, "native_bf16", lambda device: False)
    ref = extract(tiny_encoder, rgb, "encoder", (1, 2, 4))
    monkeypatch.setattr(features, "native_bf16", lambda device: bf16)
    got = extract(tiny_encoder, rgb, "encoder", (1, 2, 4))
    for a, b in zip(ref.levels, got.levels, strict=True):
        assert b.dtype == torch.float32 and b.is_contiguous()
        live = a.norm(dim=1) > 0.5  # unit vectors per pixel (an all-zero post-ReLU pixel stays 0)
        cosine = (a * b).sum(1)[live]  # 1 where they agree
        assert live.float().mean() > 0.5 and cosine.min() > (0.98 if bf16 else 0.999), cosine.min()
