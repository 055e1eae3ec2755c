"""Framing an image at the training aspect: pad and crop geometry, reflection, the way back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.camera import framing


@pytest.mark.parametrize(
    ("image_hw", "fit", "frame_hw", "top", "left"),
    [
        ((480, 640), "pad", (480, 640), 0, 0),  # already 4:3: untouched either way (no ZoeDepth-style border)
        ((480, 640), "crop", (480, 640), 0, 0),
        ((1080, 1920), "pad", (1440, 1920), 180, 0),  # 16:9 landscape: rows added above and below
        ((1080, 1920), "crop", (1080, 1440), 0, -240),  # ... or the sides cut
        ((1920, 1080), "pad", (1920, 2560), 0, 740),  # portrait: columns added left and right
        ((1920, 1080), "crop", (810, 1080), -555, 0),
        ((481, 640), "pad", (481, 641), 0, 0),  # one pixel off 4:3: the odd pixel goes right/bottom
        ((481, 640), "crop", (480, 640), 0, 0),
    ],
)
def test_frame_has_the_training_aspect_and_centres_the_image(image_hw, fit, frame_hw, top, left):
    f = framing(image_hw, (240, 320), fit)
    assert (f.frame_hw, f.top, f.left) == (frame_hw, top, left)
    assert abs(f.frame_hw[1] / f.frame_hw[0] - 4 / 3) * f.frame_hw[0] <= 1  # 4:3 to within a pixel


def test_pad_reflects_and_crop_cuts_and_unframe_inverts_both():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)  # 1:2, training 2:3
    pad = framing((30, 60), (32, 48), "pad")
    framed = pad.frame(rgb)
    assert framed.shape == (40, 60, 3) and pad.top == 5
    np.testing.assert_array_equal(framed[5:35], rgb)
    np.testing.assert_array_equal(framed[:5], rgb[5:0:-1])  # mirrored about the first row, which is not repeated
    np.testing.assert_array_equal(framed[35:], rgb[-2:-7:-1])
    depth = rng.uniform(1, 5, (40, 60)).astype(np.float32)
    np.testing.assert_array_equal(pad.unframe(depth), depth[5:35])

    crop = framing((30, 60), (32, 48), "crop")
    framed = crop.frame(rgb)
    assert framed.shape == (30, 45, 3) and crop.left == -7
    np.testing.assert_array_equal(framed, rgb[:, 7:52])
    back = crop.unframe(depth[:30, :45])  # (30, 60): the cut columns have no depth
    assert back.shape == (30, 60) and np.isnan(back[:, :7]).all() and np.isnan(back[:, 52:]).all()
    np.testing.assert_array_equal(back[:, 7:52], depth[:30, :45])


def test_extreme_aspects_and_bad_input():
    rgb = np.arange(2 * 50 * 3, dtype=np.uint8).reshape(2, 50, 3)  # a 2-pixel-high strip
    f = framing((2, 50), (240, 320), "pad")
    assert f.frame(rgb).shape == (38, 50, 3)  # reflected again and again (numpy's reflect repeats)
    assert framing((2, 50), (240, 320), "crop").frame(rgb).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="allowed: pad | crop"):
        framing((2, 50), (240, 320), "stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="framing is for"):
        f.frame(rgb[:1])


def test_aspect_differs_is_one_rule_for_the_pose_frames_and_the_report() -> None:
    """640x480 at 240x320 is exact; TUM's frames at the NYU model's 240x320 are; a 16:9 frame is not."""
    from pipeline.camera import ASPECT_TOLERANCE, aspect_differs

    assert not aspect_differs((480, 640), (240, 320)) and not aspect_differs((96, 128), (240, 320))
    assert aspect_differs((720, 1280), (240, 320)) and aspect_differs((240, 320), (720, 1280))
    squeeze = 1 + 2 * ASPECT_TOLERANCE  # just beyond the tolerance either way
    assert aspect_differs((100, round(100 * 4 / 3 * squeeze)), (300, 400))
    assert not aspect_differs((1000, round(1000 * 4 / 3 * (1 + ASPECT_TOLERANCE / 2))), (300, 400))
