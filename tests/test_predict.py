"""The `predict` CLI: millimetre PNGs at each image's size, previews, undistorted framing, point clouds, failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pipeline.camera import NYU_KINECT
from pipeline.evaluation.inference import predict_batch
from pipeline.model import UNet, load_model, save_model
from pipeline.predict import NO_DEPTH_RGB, colourise, depth_for_image, depth_to_mm16, main
from tests.conftest import model_params
from tests.ply_reader import read_ply

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
    src = image(tmp_path / "room.png", (40, 60))  # the training aspect (2:3): not padded, not cropped
    out = tmp_path / "out"
    assert main([str(src), "--model", str(model_path), "--out", str(out)]) == 0
    with Image.open(out / "room_depth.png") as im:
        mm = np.asarray(im)
    assert mm.dtype == np.uint16 and mm.shape == (40, 60)
    model, _ = load_model(model_path)
    rgb = np.asarray(Image.open(src).convert("RGB"))[None]  # (1, H, W, 3)
    expected = predict_batch(model, rgb, TRAIN_HW)[0]  # (H, W) metres: the evaluate stage's path
    np.testing.assert_array_equal(mm, np.rint(expected * 1000).astype(np.uint16))
    with Image.open(out / "room_depth_preview.png") as im:
        assert im.mode == "RGB" and im.size == (60, 40)
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
    assert depth_to_mm16(np.array([[np.nan, 2.0]])).tolist() == [[0, 2000]]  # no prediction -> 0, as NYU's holes
    # The same depth gets the same colour whatever else is in the image (no per-image scaling).
    a, b = colourise(np.array([[2.0, 9.0]]), 10.0), colourise(np.array([[2.0, 3.0]]), 10.0)
    assert a.dtype == np.uint8 and a.shape == (1, 2, 3)
    np.testing.assert_array_equal(a[0, 0], b[0, 0])
    assert not np.array_equal(a[0, 0], a[0, 1])


class Spy(nn.Module):
    """Records what the network is shown; predicts 1 m + the red channel (so depth follows the image)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())  # (B, 3, h, w)
        return 1.0 + x[:, :1]  # (B, 1, h, w)


def _extent(mask: np.ndarray) -> tuple[int, int]:
    """(rows, cols) spanned by the True pixels."""
    rows, cols = np.nonzero(mask)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_the_network_sees_a_circle_as_a_circle_with_pad_and_crop():
    """A disc in a 1:2 image (training aspect 2:3) stays round; squashing it (the old path) makes it an ellipse."""
    H, W, r = 60, 120, 20
    v, u = np.mgrid[0:H, 0:W]
    disc = (v - H / 2 + 0.5) ** 2 + (u - W / 2 + 0.5) ** 2 < r**2
    rgb = np.where(disc[..., None], 255, 0).astype(np.uint8).repeat(3, -1)  # (H, W, 3) white disc on black
    seen = {}
    for fit in ("pad", "crop"):
        spy = Spy()
        depth, frame = depth_for_image(spy, rgb, TRAIN_HW, fit)
        assert depth.shape == (H, W)
        seen[fit] = _extent(spy.seen[0][0, 0].numpy() > 0.5)
    spy = Spy()
    predict_batch(spy, rgb[None], TRAIN_HW)  # the whole image resized to 32x48: 0.53 x 0.4
    squashed = _extent(spy.seen[0][0, 0].numpy() > 0.5)
    # Documented geometry: pad frames 80x120 (scale 0.4), crop 60x90 (scale 0.53), both uniform.
    assert seen["pad"] == (16, 16) and seen["crop"] == (22, 22)
    assert squashed == (22, 16)


def test_other_aspects_give_the_image_size_padded_everywhere_or_cropped_in_the_centre(tmp_path, model_path):
    src = image(tmp_path / "wide.png", (30, 60))  # 1:2; the model's 2:3 frame is 40x60 (pad) or 30x45 (crop)
    for fit in ("pad", "crop"):
        out = tmp_path / fit
        assert main([str(src), "--model", str(model_path), "--out", str(out), "--fit", fit]) == 0
        with Image.open(out / "wide_depth.png") as im:
            mm = np.asarray(im)
        assert mm.shape == (30, 60)
        if fit == "pad":
            assert (mm > 0).all()  # every pixel has a depth
        else:  # 45 centre columns: 7 cut on the left, 8 on the right, 0 = no depth (as NYU's raw depth)
            assert (mm[:, 7:52] > 0).all() and (mm[:, :7] == 0).all() and (mm[:, 52:] == 0).all()
            with Image.open(out / "wide_depth_preview.png") as im:
                assert tuple(np.asarray(im)[0, 0]) == NO_DEPTH_RGB


def test_ply_has_a_point_per_depth_pixel_with_its_colour(tmp_path, model_path):
    src = image(tmp_path / "room.png", (30, 60))
    out = tmp_path / "out"
    assert main([str(src), "--model", str(model_path), "--out", str(out), "--ply", "--fit", "crop"]) == 0
    with Image.open(out / "room_depth.png") as im:
        mm = np.asarray(im)
    rgb = np.asarray(Image.open(src).convert("RGB"))
    _, v = read_ply(out / "room.ply")
    valid = mm > 0
    assert len(v) == valid.sum() == 30 * 45  # the cropped-away columns give no point
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), rgb[valid])
    np.testing.assert_allclose(v["z"], mm[valid] / 1000.0, atol=5e-4)  # the PNG is rounded to 1 mm
    # Default intrinsics: the Kinect's, scaled to the 30x45 frame (its 640x480), moved by the 7 cut columns.
    k = NYU_KINECT.scaled(45, 30)
    rows, cols = np.nonzero(valid)
    np.testing.assert_allclose(v["x"], (cols - (k.cx + 7)) * v["z"] / k.fx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v["y"], (rows - k.cy) * v["z"] / k.fy, rtol=1e-5, atol=1e-6)
    # --fx/--cx override them, in the input image's pixels.
    assert main([str(src), "--model", str(model_path), "--out", str(out), "--ply", "--fx", "100", "--cx", "0"]) == 0
    _, v = read_ply(out / "room.ply")
    np.testing.assert_allclose(v["x"], np.tile(np.arange(60), 30) * v["z"] / 100.0, rtol=1e-5, atol=1e-6)
    assert len(v) == 30 * 60  # pad (the default): every pixel


def test_bad_camera_options_are_one_line_errors(tmp_path, model_path, caplog):
    src = image(tmp_path / "a.png", (20, 20))
    out = tmp_path / "out"
    assert main([str(src), "--model", str(model_path), "--out", str(out), "--fx", "500"]) == 1
    assert "--fx only apply to the point cloud; add --ply" in caplog.text
    assert main([str(src), "--model", str(model_path), "--out", str(out), "--ply", "--fy", "-3"]) == 1
    assert "--fy is -3.0; pass the focal length in pixels (> 0)" in caplog.text
    assert main([str(src), "--model", str(model_path), "--out", str(out), "--ply", "--cx", "nan"]) == 1
    assert "--cx is nan" in caplog.text
    assert [r.getMessage().count("\n") for r in caplog.records if r.levelname == "ERROR"] == [0, 0, 0]
    assert not out.exists()
    with pytest.raises(SystemExit) as e:  # argparse: usage and the allowed choices, exit 2
        main([str(src), "--model", str(model_path), "--out", str(out), "--fit", "stretch"])
    assert e.value.code == 2
