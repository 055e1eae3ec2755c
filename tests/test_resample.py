"""The shared pixel grid: RGB, depth targets and upsampled predictions describe the same points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.resample import resize_depth, resize_rgb, sample_indices, upsample_prediction

SIZES = [(240, 320), (120, 160), (100, 150), (37, 53)]


def test_resize_depth_keeps_values_and_holes() -> None:
    rng = np.random.default_rng(0)
    depth = np.where(rng.random((480, 640)) < 0.5, 1.25, 7.5).astype(np.float32)  # many sharp edges
    depth[rng.random((480, 640)) < 0.2] = 0.0  # holes
    for h, w in SIZES:
        out = resize_depth(depth, h, w)
        assert out.shape == (h, w) and out.dtype == np.float32
        assert set(np.unique(out)) <= {0.0, 1.25, 7.5}  # never a blend of neighbours
    halved = resize_depth(depth, 240, 320)
    np.testing.assert_array_equal(halved, depth[1::2, 1::2])  # one real measurement per output pixel


def test_resize_rgb_antialiases() -> None:
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: pure aliasing for a point-sampling resize
    out = resize_rgb(stripes, 240, 320)
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8
    assert np.abs(out[2:-2, 2:-2].astype(int) - 128).max() <= 2  # averaged to mid-grey
    np.testing.assert_array_equal(resize_rgb(stripes, 480, 640), stripes)


def test_resize_rgb_keeps_flat_images_and_low_passes_noise() -> None:
    flat = np.full((48, 64, 3), 173, np.uint8)
    np.testing.assert_array_equal(resize_rgb(flat, 24, 32), np.full((24, 32, 3), 173, np.uint8))
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    ours = resize_rgb(noisy, 48, 64).astype(float)
    # Point sampling keeps the noise's std; the 2x tent ([1, 2, 1] / 4 per axis) keeps 0.375 of it.
    assert ours.std() == pytest.approx(0.375 * noisy.std(), rel=0.05)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_rgb_and_depth_sample_the_same_point(h: int, w: int) -> None:
    # An image whose red and green channels *are* the x and y pixel coordinates: the
    # resized image then says where each output pixel is centred; the depth sample's
    # centre is sample_indices + 0.5. A linear ramp is reproduced exactly by a symmetric
    # filter, so away from the border the two must agree to rounding.
    H, W = 480, 640
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    scale = 255 / 64  # keep uint8: 64 px of ramp per 255 levels, tiled
    img = np.stack([(xs % 64) * scale, (ys % 64) * scale, np.zeros_like(xs)], -1).round().astype(np.uint8)
    out = resize_rgb(img, h, w).astype(np.float64)
    cx = (sample_indices(W, w) + 0.5) % 64 * scale  # (w,)
    cy = (sample_indices(H, h) + 0.5) % 64 * scale  # (h,)
    # Only where the tent does not straddle a tile edge of the ramp or the image border.
    support = int(np.ceil(max(H / h, W / w))) + 1

    def inner(idx: np.ndarray, full: int) -> np.ndarray:
        return (idx % 64 >= support) & (idx % 64 < 64 - support) & (idx >= support) & (idx < full - support)

    okx, oky = inner(sample_indices(W, w), W), inner(sample_indices(H, h), H)
    err_x = out[:, okx, 0] - cx[okx][None, :]
    err_y = out[oky, :, 1] - cy[oky][:, None]
    assert np.abs(err_x).max() <= 1.0 and np.abs(err_y).max() <= 1.0  # uint8 rounding only
    assert abs(err_x.mean()) < 0.2 and abs(err_y.mean()) < 0.2  # no systematic shift


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_depth_round_trip_has_no_systematic_shift(h: int, w: int) -> None:
    # A perfect low-resolution predictor of a tilted plane: the target sampled by
    # resize_depth, upsampled back to 480x640, must land on the full-resolution depth.
    # The old path (bilinear with align_corners=False) was off by half a pixel of slope.
    H, W = 480, 640
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    depth = 1.0 + 0.01 * xs + 0.005 * ys  # metres
    target = resize_depth(depth, h, w)  # (h, w)
    up = upsample_prediction(torch.from_numpy(target)[None], H, W)[0].numpy()  # (H, W)
    rows, cols = sample_indices(H, h), sample_indices(W, w)
    inner = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # between the first and last sample
    np.testing.assert_allclose(up[inner], depth[inner], atol=1e-9)
    old = torch.nn.functional.interpolate(torch.from_numpy(target)[None, None], (H, W), mode="bilinear")
    shift = (old[0, 0].numpy() - depth)[inner].mean()
    if H % h == 0 and (H // h) % 2 == 0:  # an even reduction factor: the old path's half-pixel offset
        assert abs(shift) > 0.003
    assert abs((up - depth)[inner].mean()) < 1e-9


def test_upsample_prediction_same_size_and_border() -> None:
    pred = torch.rand(2, 6, 8)
    assert upsample_prediction(pred, 6, 8) is pred
    up = upsample_prediction(pred, 12, 16)
    assert up.shape == (2, 12, 16)
    np.testing.assert_allclose(up[:, 1::2, 1::2], pred, rtol=1e-6)  # exact at the sample pixels
    np.testing.assert_allclose(up[:, 0, 1::2], pred[:, 0], rtol=1e-6)  # border: nearest sample repeated


def test_prediction_for_an_image_smaller_than_the_training_resolution() -> None:
    # predict on a 5x7 thumbnail with a model trained at 12x16: resize_rgb repeats image
    # pixels; a prediction that repeats them too must come back exactly.
    img = torch.rand(1, 5, 7, dtype=torch.float64)
    rows, cols = sample_indices(5, 12), sample_indices(7, 16)
    pred = img[:, rows][:, :, cols]  # (1, 12, 16)
    back = upsample_prediction(pred, 5, 7)
    assert torch.isfinite(back).all()
    torch.testing.assert_close(back, img)
    mixed = upsample_prediction(torch.rand(2, 12, 4), 5, 9)  # smaller on one axis, larger on the other
    assert mixed.shape == (2, 5, 9) and torch.isfinite(mixed).all()
