"""U-Net shapes, output range, encoder taps, config checks, autocast/channels_last, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline.config import ModelParams, ParamsError, load_params, section_from_dict, to_yaml_dict
from pipeline.errors import PipelineError
from pipeline.model import UNet, check_input_size, load_model, save_model
from pipeline.model.unet import INIT_DEPTH

REPO = Path(__file__).resolve().parents[1]
TINY = ModelParams(
    encoder="unet",
    pretrained=False,
    weights=None,
    base_channels=4,
    depth=2,
    norm="batch",
    activation="relu",
    dropout=0.1,
    max_depth=10.0,
)


def _net(cfg: ModelParams = TINY, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(cfg)


def _images(b: int = 2, h: int = 32, w: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_forward_shape_and_range(norm: str, activation: str) -> None:
    cfg = dataclasses.replace(TINY, norm=norm, activation=activation, max_depth=5.0)
    net = _net(cfg).eval()
    out = net(_images())
    assert out.shape == (2, 1, 32, 48)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out > 0).all() and (out < 5.0).all()


def test_initial_prediction_is_typical_indoor_depth() -> None:
    out = _net().eval()(_images())
    assert abs(out.median().item() - INIT_DEPTH) < 0.1 * INIT_DEPTH
    assert out.std().item() > 0  # head weights are not zero: the decoder gets gradients


def test_encode_shapes() -> None:
    cfg = dataclasses.replace(TINY, depth=3)
    feats = _net(cfg).eval().encode(_images(h=32, w=48))
    expected = [(2, 4 * 2**k, 32 // 2**k, 48 // 2**k) for k in range(4)]
    assert [tuple(f.shape) for f in feats] == expected


def test_decoder_consumes_the_encode_features(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net().eval()
    x = _images()
    feats = net.encode(x)
    seen: dict[str, torch.Tensor] = {}

    def hook(mod: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen["skip0"] = args[1]

    handle = net.ups[0].register_forward_hook(hook)
    base = net(x)
    handle.remove()
    assert torch.equal(seen["skip0"], feats[0])  # the finest skip is encode's first feature
    # Perturbing what encode returns must change the depth: forward goes through encode.
    original = net.encode
    for k in range(len(feats)):
        monkeypatch.setattr(net, "encode", lambda x, k=k: [f + (i == k) for i, f in enumerate(original(x))])
        assert not torch.allclose(net(x), base), f"feature {k} is not used by the decoder"


def test_odd_size_still_runs() -> None:
    # Not a training size (check_input_size rejects it) but inference must not crash.
    out = _net().eval()(_images(h=30, w=50))
    assert out.shape == (2, 1, 30, 50)


def test_rgb_normalisation_buffers() -> None:
    net = UNet(TINY, rgb_mean=(0.1, 0.2, 0.3), rgb_std=(0.5, 0.5, 0.5))
    assert net.rgb_mean.shape == (1, 3, 1, 1)
    assert "rgb_mean" in net.state_dict() and "rgb_std" in net.state_dict()
    torch.testing.assert_close(net.rgb_std.flatten(), torch.tensor([0.5, 0.5, 0.5]))


def test_model_config_round_trips_through_the_checkpoint_dict() -> None:
    cfg = dataclasses.replace(TINY, base_channels=8, depth=3, norm="group", activation="silu", dropout=0.2,
                              max_depth=8.0)  # fmt: skip
    assert section_from_dict(ModelParams, to_yaml_dict(cfg)) == cfg
    with pytest.raises(ParamsError, match="unknown key 'model.width'"):
        section_from_dict(ModelParams, {**to_yaml_dict(cfg), "width": 3})
    with pytest.raises(ParamsError, match="model.norm"):
        dataclasses.replace(cfg, norm="layer")  # validated wherever it is made, not only from YAML
    with pytest.raises(ParamsError, match="model.depth"):
        dataclasses.replace(cfg, depth=0)


def test_check_input_size() -> None:
    cfg = dataclasses.replace(TINY, depth=4)
    check_input_size(cfg, 240, 320)  # divisible by 16: no error
    with pytest.raises(ParamsError) as e:
        check_input_size(cfg, 250, 320)
    msg = str(e.value)
    assert "model.depth" in msg and "preprocess.height" in msg and "preprocess.width" not in msg
    assert "240" in msg and "256" in msg  # nearest valid heights
    assert "<= 1" in msg  # 250 = 2 * 125: only one pooling fits
    with pytest.raises(ParamsError, match=r"preprocess\.width.*use 320 or 336"):
        check_input_size(cfg, 240, 330)


def test_channels_last_matches_default() -> None:
    net = _net().eval()
    x = _images()
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_cpu() -> None:
    net = _net().train()
    x = _images()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.float32  # the head runs in float32
    assert torch.isfinite(out).all() and (out > 0).all()
    out.log().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def _train_a_little(net: UNet) -> None:
    """A few optimiser steps so BatchNorm statistics and weights are not at init."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        net(_images()).log().mean().backward()
        opt.step()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    net = UNet(TINY, rgb_mean=(0.4, 0.4, 0.4), rgb_std=(0.3, 0.2, 0.1))
    _train_a_little(net)
    net.eval()
    params = to_yaml_dict(load_params(REPO / "params.yaml"))
    path = tmp_path / "models" / "model.pt"
    extra = {"params": params, "epoch": 3, "val_metrics": {"abs_rel": 0.2}}
    save_model(path, net, extra)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left

    raw = torch.load(path, weights_only=True)
    assert raw["params"] == params and raw["epoch"] == 3 and raw["model_config"] == to_yaml_dict(TINY)
    assert raw["rgb_std"] == pytest.approx([0.3, 0.2, 0.1])

    loaded, meta = load_model(path)
    assert not loaded.training and meta["val_metrics"] == {"abs_rel": 0.2} and "state_dict" not in meta
    x = _images(seed=5)
    assert torch.equal(loaded(x), net(x))
    # Trained at 32x48, the checkpoint runs at another resolution.
    assert loaded(_images(1, 64, 96)).shape == (1, 1, 64, 96)


def test_checkpoint_unwraps_compiled_and_converts_numpy(tmp_path: Path) -> None:
    import numpy as np

    net = _net().eval()

    class Wrapped(torch.nn.Module):  # what torch.compile returns: the model under `_orig_mod`
        def __init__(self, inner: UNet) -> None:
            super().__init__()
            self._orig_mod = inner

    extra = {"val_metrics": {"rmse": np.float64(0.5)}, "arr": np.ones(2), "torch_version": torch.__version__}
    save_model(tmp_path / "m.pt", Wrapped(net), extra)
    loaded, meta = load_model(tmp_path / "m.pt")
    assert type(meta["torch_version"]) is str and meta["torch_version"] == torch.__version__
    assert meta["val_metrics"]["rmse"] == 0.5 and isinstance(meta["val_metrics"]["rmse"], float)
    assert torch.equal(meta["arr"], torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="extra 'bad'"):
        save_model(tmp_path / "m2.pt", net, {"bad": object()})
    with pytest.raises(TypeError, match="reserved"):
        save_model(tmp_path / "m2.pt", net, {"state_dict": {}})
    assert not (tmp_path / "m2.pt").exists()


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="missing.pt not found"):
        load_model(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PipelineError, match="garbage.pt is not a readable model checkpoint"):
        load_model(garbage)
    pickled = tmp_path / "pickled.pt"
    torch.save({"object": PipelineError("x")}, pickled)  # a pickle of an arbitrary class
    with pytest.raises(PipelineError, match="pickled.pt holds Python objects") as err:
        load_model(pickled)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)  # no advice to run its code
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(PipelineError, match="other.pt is not a model checkpoint"):
        load_model(other)
    bad = tmp_path / "bad.pt"
    save_model(bad, _net(), {})
    ckpt = torch.load(bad, weights_only=True)
    ckpt["model_config"]["base_channels"] = 8  # config no longer fits the weights
    torch.save(ckpt, bad)
    with pytest.raises(PipelineError, match="bad.pt: weights do not fit"):
        load_model(bad)


@pytest.mark.parametrize("hw", [(4, 6), (2, 2), (15, 20)])
def test_deterministic_upsampling_equals_bilinear_interpolate(hw: tuple[int, int]) -> None:
    # train.deterministic turns on torch.use_deterministic_algorithms, under which CUDA
    # refuses interpolate's backward; the slice-based 2x path must be the same function.
    from pipeline.model.blocks import upsample_to

    h, w = hw
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.interpolate(x, size=(2 * h, 2 * w), mode="bilinear", align_corners=False)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    torch.use_deterministic_algorithms(True)
    try:
        out = upsample_to(x, (2 * h, 2 * w))
    finally:
        torch.use_deterministic_algorithms(False)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
