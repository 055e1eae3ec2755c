"""The `predict` CLI: 16-bit millimetre PNGs at each image's own size, previews, clean failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.evaluation.inference import predict_batch
from pipeline.model import UNet, load_model, save_model
from pipeline.predict import colourise, depth_to_mm16, main
from tests.conftest import model_params

ROOT = Path(__file__).resolve().parents[1]
TRAIN_HW = (32, 48)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny UNet checkpoint trained (nominally) at 32x48."""
    torch.manual_seed(0)
    model = UNet(model_params(dropout=0.0)).eval()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, {"params": {"preprocess": {"height": TRAIN_HW[0], "width": TRAIN_HW[1]}}, "epoch": 1})
    return path


def image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """A random image of (height, width) in the given PIL mode, saved to `path`."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return path


def test_writes_millimetre_png_of_the_image_size_and_a_preview(tmp_path, model_path):
    src = image(tmp_path / "room.png", (37, 53))
    out = tmp_path / "out"
    assert main([str(src), "--model", str(model_path), "--out", str(out)]) == 0
    with Image.open(out / "room_depth.png") as im:
        mm = np.asarray(im)
    assert mm.dtype == np.uint16 and mm.shape == (37, 53)
    model, _ = load_model(model_path)
    rgb = np.asarray(Image.open(src).convert("RGB"))[None]  # (1, H, W, 3)
    expected = predict_batch(model, rgb, TRAIN_HW)[0]  # (H, W) metres: the evaluate stage's path
    np.testing.assert_array_equal(mm, np.rint(expected * 1000).astype(np.uint16))
    with Image.open(out / "room_depth_preview.png") as im:
        assert im.mode == "RGB" and im.size == (53, 37)
    assert sorted(p.name for p in out.iterdir()) == ["room_depth.png", "room_depth_preview.png"]


def test_grayscale_and_rgba_inputs(tmp_path, model_path):
    gray = image(tmp_path / "gray.jpg", (40, 30), "L")
    rgba = image(tmp_path / "alpha.png", (25, 70), "RGBA")
    out = tmp_path / "out"
    assert main([str(gray), str(rgba), "--model", str(model_path), "--out", str(out), "--flip-tta"]) == 0
    with Image.open(out / "gray_depth.png") as a, Image.open(out / "alpha_depth.png") as b:
        assert np.asarray(a).shape == (40, 30) and np.asarray(b).shape == (25, 70)


def test_not_an_image_exits_1_naming_it_and_writes_nothing(tmp_path, model_path):
    good = image(tmp_path / "good.png", (20, 20))
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.predict", str(good), str(bad), "--model", str(model_path), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # the good image listed first was not written either


def test_missing_model_and_clashing_names(tmp_path, model_path, caplog):
    src = image(tmp_path / "a.png", (20, 20))
    missing = tmp_path / "nope.pt"
    assert main([str(src), "--model", str(missing), "--out", str(tmp_path / "out")]) == 1
    assert str(missing) in caplog.text
    (tmp_path / "sub").mkdir()
    twin = image(tmp_path / "sub" / "a.jpg", (20, 20))
    assert main([str(src), str(twin), "--model", str(model_path), "--out", str(tmp_path / "out")]) == 1
    assert "a_depth.png" in caplog.text and not (tmp_path / "out").exists()


def test_millimetres_and_fixed_preview_scale():
    depth = np.array([[0.0, 1.2346, 9.9994, 70.0]])
    assert depth_to_mm16(depth).tolist() == [[0, 1235, 9999, 65535]]  # rounded, clipped to uint16
    # The same depth gets the same colour whatever else is in the image (no per-image scaling).
    a, b = colourise(np.array([[2.0, 9.0]]), 10.0), colourise(np.array([[2.0, 3.0]]), 10.0)
    assert a.dtype == np.uint8 and a.shape == (1, 2, 3)
    np.testing.assert_array_equal(a[0, 0], b[0, 0])
    assert not np.array_equal(a[0, 0], a[0, 1])
