"""Training: augmentation invariants, batching, schedule, a learning step, outputs, determinism, errors, the stage."""

from __future__ import annotations

import csv
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import ParamsError
from pipeline.errors import PipelineError
from pipeline.losses import build_loss
from pipeline.metrics import METRIC_NAMES
from pipeline.model import UNet, load_model
from pipeline.training import train as training
from pipeline.training.device_data import AugmentConfig, augment, epoch_batches
from pipeline.training.distributed import DistContext
from pipeline.training.loop import Trainer, optimise
from pipeline.training.optim import build_optimizer, build_scheduler, lr_factor
from pipeline.training.runlog import COLUMNS
from tests.conftest import REPO, shrunk_params, shrunk_raw
from tests.train_helpers import assert_same_state, load_best_state, load_last, make_root, without_timing


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ---- augmentation and batching -------------------------------------------------------------


def _smooth_batch(b: int = 6, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rgb whose every channel is depth / 10, for a gentle depth ramp in 2..3 m.

    Gentle, so that nearest (depth) and bilinear (rgb) resampling differ by < 0.5%.
    """
    ys = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, 1, w)
    depth = (2.0 + 0.5 * ys + 0.5 * xs).expand(b, 1, h, w).contiguous()  # (B, 1, H, W)
    return (depth / 10).expand(b, 3, h, w).contiguous(), depth


def test_augment_scales_depth_with_the_zoom_and_moves_rgb_and_depth_together() -> None:
    rgb, depth = _smooth_batch()
    no_colour = AugmentConfig(brightness=0, contrast=0, saturation=0, channel_swap_p=0)
    out_rgb, out_depth = augment(rgb, depth, torch.Generator().manual_seed(0), no_colour)
    assert out_rgb.shape == rgb.shape and out_depth.shape == depth.shape
    # Same crop on both: rgb*10 is the resampled scene depth, out_depth that divided by s.
    inner = (slice(None), slice(0, 1), slice(2, -2), slice(2, -2))  # away from the border pixels
    s = (out_rgb[inner] * 10 / out_depth[inner]).flatten(1)  # (B, pixels) the zoom per image
    assert (s.amax(1) - s.amin(1) < 0.02).all(), "rgb and depth were not resampled alike"
    assert (s.mean(1) > 0.97).all() and (s.mean(1) < no_colour.max_scale + 0.03).all()
    assert s.mean(1).std() > 0.01, "every image got the same zoom"


def test_augment_flip_alone_mirrors_exactly() -> None:
    rgb, depth = _smooth_batch()
    flip_only = AugmentConfig(max_scale=1.0, flip_p=1.0, brightness=0, contrast=0, saturation=0, channel_swap_p=0)
    out_rgb, out_depth = augment(rgb, depth, torch.Generator().manual_seed(0), flip_only)
    torch.testing.assert_close(out_depth, depth.flip(-1))
    torch.testing.assert_close(out_rgb, rgb.flip(-1))


def test_augment_colour_stays_in_range_and_is_reproducible() -> None:
    g = torch.Generator().manual_seed(3)
    rgb = torch.rand(8, 3, 16, 16, generator=g)
    depth = 1 + torch.rand(8, 1, 16, 16, generator=g)
    a = augment(rgb, depth, torch.Generator().manual_seed(7))
    b = augment(rgb, depth, torch.Generator().manual_seed(7))
    c = augment(rgb, depth, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].min() >= 0 and a[0].max() <= 1
    assert (a[1] <= depth.amax()).all() and (a[1] >= depth.amin() / AugmentConfig().max_scale - 1e-6).all()


def _colour_reference(rgb: torch.Tensor, u: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Brightness, contrast, saturation and channel permutation applied one after another."""
    B = rgb.shape[0]
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def factor(col: int, amount: float) -> torch.Tensor:
        return (1 + amount * (2 * u[:, col] - 1)).view(B, 1, 1, 1)

    x = rgb * factor(4, cfg.brightness)
    mean_grey = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean_grey) * factor(5, cfg.contrast) + mean_grey
    grey = (x * luma).sum(1, keepdim=True)
    x = (x - grey) * factor(6, cfg.saturation) + grey
    perm = [u[i, 8:11].argsort().tolist() if u[i, 7] < cfg.channel_swap_p else [0, 1, 2] for i in range(B)]
    return torch.stack([x[i, perm[i]] for i in range(B)]).clamp(0, 1)


def test_fused_colour_jitter_equals_the_step_by_step_version() -> None:
    g = torch.Generator().manual_seed(11)
    rgb, depth = torch.rand(16, 3, 8, 12, generator=g), 1 + torch.rand(16, 1, 8, 12, generator=g)
    colour_only = AugmentConfig(max_scale=1.0, flip_p=0.0, brightness=0.3, contrast=0.3, saturation=0.5)
    out, out_depth = augment(rgb, depth, torch.Generator().manual_seed(2), colour_only)
    u = torch.rand(16, 11, generator=torch.Generator().manual_seed(2))  # the same draw augment makes
    torch.testing.assert_close(out, _colour_reference(rgb, u, colour_only), atol=1e-5, rtol=0)
    torch.testing.assert_close(out_depth, depth)  # scale 1, no flip: geometry is the identity
    assert any(u[i, 7] < 0.5 and u[i, 8:11].argsort().tolist() != [0, 1, 2] for i in range(16))  # a swap happened


@pytest.mark.parametrize("world", [1, 2, 3])
def test_epoch_batches_shard_disjointly_and_drop_the_remainder(world: int) -> None:
    n, b = 23, 3
    shards = [epoch_batches(n, b, DistContext(rank=r, world_size=world), torch.Generator().manual_seed(5))
              for r in range(world)]  # fmt: skip
    steps = n // (b * world)
    assert all(s.shape == (steps, b) for s in shards)
    seen = torch.cat([s.flatten() for s in shards])
    assert len(set(seen.tolist())) == steps * b * world  # no image twice
    assert seen.min() >= 0 and seen.max() < n


# ---- schedule and a learning step -------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    f = [lr_factor(s, warmup_steps=4, total_steps=20, schedule="cosine") for s in range(20)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(f[3:], f[4:], strict=False))
    assert f[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert lr_factor(20, 4, 20, "cosine") == pytest.approx(0.0)
    assert [lr_factor(s, 0, 20, "constant") for s in (0, 10, 19)] == [1.0, 1.0, 1.0]


def test_a_few_steps_on_one_batch_lower_the_loss() -> None:
    torch.manual_seed(0)
    params = shrunk_params(train={"lr": 3e-3, "schedule": "constant", "warmup_epochs": 0})
    net = UNet(params.model)
    opt = build_optimizer(net, params.train, torch.device("cpu"))
    tr = Trainer(net, net, opt, build_scheduler(opt, params.train, 1), build_loss(params.loss),
                 torch.device("cpu"), amp=False, channels_last=False, protocol=params.eval)  # fmt: skip
    rgb, depth = _smooth_batch(b=4, h=32, w=48)
    losses = [optimise(tr, rgb, depth).item() for _ in range(15)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses


# ---- whole runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "activation", "loss"), [("batch", "relu", "eigen"), ("group", "gelu", "l2"), ("none", "silu", "l2_smooth")]
)
def test_train_writes_outputs_for_several_configs(tmp_path: Path, norm: str, activation: str, loss: str) -> None:
    params = shrunk_params(model={"norm": norm, "activation": activation}, loss={"name": loss}, train={"epochs": 1})
    result = training.run(params, make_root(tmp_path))
    rows = _read_tsv(tmp_path / "reports" / "train_log.tsv")
    assert tuple(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1"]
    assert all(math.isfinite(float(r[c])) for r in rows for c in COLUMNS)
    model, meta = load_model(tmp_path / "models" / "model.pt")
    assert meta["epoch"] == result["best_epoch"] and meta["params"]["model"]["norm"] == norm
    assert set(meta["val_metrics"]) == {"val_loss", *(f"val_{m}" for m in METRIC_NAMES)}
    assert meta["val_metrics"]["val_abs_rel"] == pytest.approx(float(rows[meta["epoch"] - 1]["val_abs_rel"]), rel=1e-5)
    with torch.no_grad():
        pred = model(torch.rand(2, 3, 32, 48))
    assert pred.shape == (2, 1, 32, 48) and torch.isfinite(pred).all()
    assert load_last(tmp_path)["epoch"] == 1
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"


def test_best_model_is_the_best_validated_epoch(tmp_path: Path) -> None:
    params = shrunk_params(train={"epochs": 3, "val_every": 2, "best_metric": "delta1"})
    result = training.run(params, make_root(tmp_path))
    rows = _read_tsv(tmp_path / "reports" / "train_log.tsv")
    assert rows[0]["val_delta1"] == "" and rows[1]["val_delta1"] and rows[2]["val_delta1"]  # epochs 2 and 3 (last)
    best_row = max(rows[1:], key=lambda r: float(r["val_delta1"]))
    assert result["best_epoch"] == int(best_row["epoch"])
    assert torch.load(tmp_path / "models" / "model.pt", weights_only=True)["epoch"] == result["best_epoch"]


def test_same_seed_same_weights_and_metrics(tmp_path: Path) -> None:
    params = shrunk_params()
    a, b = training.run(params, make_root(tmp_path / "a")), training.run(params, make_root(tmp_path / "b"))
    assert without_timing([a["final"]]) == without_timing([b["final"]])
    assert_same_state(load_last(tmp_path / "a")["model"], load_last(tmp_path / "b")["model"])
    assert_same_state(load_best_state(tmp_path / "a"), load_best_state(tmp_path / "b"))
    other = training.run(shrunk_params(train={"seed": 1, "epochs": 1}), make_root(tmp_path / "c"))
    assert other["final"]["train_loss"] != load_last(tmp_path / "a")["history"][0]["train_loss"]  # the seed matters


# ---- bad input ---------------------------------------------------------------------------------


def test_size_not_divisible_by_two_to_the_depth_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"preprocess\.width.*model\.depth"):
        training.run(shrunk_params(model={"depth": 5}), make_root(tmp_path))


def test_batch_larger_than_the_train_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="train.batch_size"):
        training.run(shrunk_params(train={"batch_size": 16}), make_root(tmp_path))


def test_missing_processed_data_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="dvc repro preprocess"):
        training.run(shrunk_params(), tmp_path)


def test_unavailable_device_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    with pytest.raises(PipelineError, match="train.device is 'cuda'.*auto or cpu"):
        training.run(shrunk_params(train={"device": "cuda"}), make_root(tmp_path))


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = build_loss

    def nan_in_epoch_two(loss_params):  # 2 train steps + 1 val batch per epoch
        fn = real(loss_params)

        def loss(pred, target, image):
            calls["n"] += 1
            out = fn(pred, target, image)
            return out * float("nan") if calls["n"] == 5 else out

        return loss

    monkeypatch.setattr(training, "build_loss", nan_in_epoch_two)
    make_root(tmp_path)
    with pytest.raises(PipelineError, match=r"epoch 2, step 2 of 2.*train\.lr.*last\.pt keeps epoch 1"):
        training.run(shrunk_params(), tmp_path)
    assert load_last(tmp_path)["epoch"] == 1
    assert torch.load(tmp_path / "models" / "model.pt", weights_only=True)["epoch"] == 1
    assert len(_read_tsv(tmp_path / "reports" / "train_log.tsv")) == 1


# ---- the stage ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_stage_end_to_end(tmp_path: Path) -> None:
    raw = shrunk_raw()  # MLflow off: its sqlite set-up alone takes ~20 s (tests/test_tracking covers it)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    make_root(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }  # never the real store
    env.pop("DVC_ROOT", None)
    proc = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_read_tsv(tmp_path / raw["paths"]["train_log"])) == raw["train"]["epochs"]
    model, meta = load_model(tmp_path / raw["paths"]["model"])
    assert meta["params"]["train"]["epochs"] == 2 and meta["best_metric"] == "abs_rel"
    assert load_last(tmp_path)["epoch"] == 2
    run = yaml.safe_load((tmp_path / raw["paths"]["run_id"]).read_text())  # JSON is YAML
    assert run == {"run_id": None, "experiment_id": None, "tracking_uri": None}  # written even with MLflow off


@pytest.mark.parametrize(
    ("amp", "shown"), [("bf16", "bf16 autocast on cpu"), ("auto", "float32 on cpu"), ("off", "float32")]
)
def test_amp_modes_on_the_cpu_and_the_log_says_which_precision(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, amp: str, shown: str
) -> None:
    # train.amp: bf16 runs the mixed-precision path on the CPU, so CI executes what a GPU runs.
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        result = training.run(shrunk_params(train={"amp": amp}), make_root(tmp_path))
    assert f"precision: {shown}" in caplog.text
    rows = load_last(tmp_path)["history"]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_abs_rel"]) for r in rows)
    assert all(isinstance(v, float) for v in result["best_val_metrics"].values())  # metrics in float32/64
