"""The TUM-layout reader on sequences written as TUM ships them, association, and every bad input's one line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.camera import Intrinsics
from pipeline.errors import PipelineError
from pipeline.sequences.associate import associate
from pipeline.sequences.calibration import FREIBURG, write_calibration
from pipeline.sequences.layout import list_sequences, load_depth, load_rgb, read_sequence
from tests.tum_fixtures import SIZE, depth_of, make_tum, pose_at


def test_reader_associates_rgb_depth_and_ground_truth_as_tum_does(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    seq = read_sequence(fx.folder)
    # The RGB frame whose depth frame is missing has none within 0.02 s (its neighbours are 33 ms away): dropped.
    kept = [i for i in range(len(fx.rgb_times)) if i != fx.missing]
    assert seq.name == "rgbd_dataset_freiburg1_desk"
    assert np.allclose(seq.times, fx.rgb_times[kept], atol=1e-6)
    for f, i in zip(seq.frames, kept, strict=True):
        assert f.depth_time is not None and abs(f.depth_time - f.rgb_time - 0.0087) < 1e-5
        # Ground truth at 100 Hz (4 decimals, as TUM's): the nearest sample, as TUM's evaluation scripts take it.
        nearest = fx.gt_times[np.abs(fx.gt_times - f.rgb_time).argmin()]
        assert np.abs(f.pose[:3, 3] - pose_at(nearest)[:3, 3]).max() < 2e-4
        cos = (np.trace(f.pose[:3, :3].T @ pose_at(nearest)[:3, :3]) - 1) / 2
        assert np.degrees(np.arccos(min(cos, 1.0))) < 0.02
        assert np.array_equal(load_depth(f.depth_path), depth_of(i) / np.float32(5000))
        assert load_rgb(f.rgb_path)[0, 0, 0] == 20 * i
    # No calibration.txt: freiburg1's published intrinsics, scaled from 640x480 to the images' size.
    assert seq.intrinsics == FREIBURG["freiburg1"].scaled(SIZE[1], SIZE[0])
    assert seq.poses.shape == (len(kept), 4, 4) and seq.groundtruth_mask.all()


def test_interpolated_ground_truth_only_when_asked(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    nearest, slerped = read_sequence(fx.folder), read_sequence(fx.folder, interpolate_groundtruth=True)
    moved = [np.abs(a.pose[:3, 3] - b.pose[:3, 3]).max() for a, b in zip(nearest.frames, slerped.frames, strict=True)]
    assert max(moved) > 5e-4  # the nearest sample is up to 5 ms (1.5 mm at 0.3 m/s) from the frame's time
    for f in slerped.frames:
        assert np.abs(f.pose[:3, 3] - pose_at(f.rgb_time)[:3, 3]).max() < 2e-4


def test_frames_without_depth_are_kept_when_asked(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    frames = read_sequence(fx.folder, require_depth=False).frames
    assert len(frames) == len(fx.rgb_times)
    assert frames[fx.missing].depth_path is None and frames[fx.missing].depth_time is None
    assert frames[fx.missing + 1].depth_path is not None


def test_calibration_txt_wins_over_the_name_and_an_unknown_name_without_it_fails(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    write_calibration(fx.folder, Intrinsics(10.0, 11.0, 7.5, 5.5, SIZE[1], SIZE[0]))
    assert read_sequence(fx.folder).intrinsics == Intrinsics(10.0, 11.0, 7.5, 5.5, SIZE[1], SIZE[0])
    other = make_tum(tmp_path, name="my_kitchen")
    with pytest.raises(PipelineError, match=r"my_kitchen/calibration.txt: not found.*fx fy cx cy"):
        read_sequence(other.folder)
    assert list_sequences(tmp_path) == [other.folder, fx.folder]
    assert list_sequences(tmp_path / "none") == []


def test_association_is_tums_greedy_closest_first_matching() -> None:
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 2, 60))
    b = np.sort(rng.uniform(0, 2, 50))
    got = associate(a, b, 0.02)
    # TUM's associate.py, written out: every pair within the tolerance, closest first, each index once.
    pairs = sorted((abs(x - y), i, j) for i, x in enumerate(a) for j, y in enumerate(b) if abs(x - y) <= 0.02)
    want: dict[int, int] = {}
    for _, i, j in pairs:
        if i not in want and j not in want.values():
            want[i] = j
    assert got == want and len(got) > 10


def _edit(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new
    path.write_text("\n".join(lines) + "\n")


def _one_line(e: pytest.ExceptionInfo[PipelineError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_a_listed_image_that_is_missing(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    (fx.folder / f"rgb/{fx.rgb_times[2]:.6f}.png").unlink()  # rgb.txt line 6 (after 3 comment lines)
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"rgb\.txt line 6: rgb/\S+\.png does not exist", _one_line(e))


def test_a_malformed_line(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    _edit(fx.folder / "groundtruth.txt", 7, "1305031102.2 1.0 2.0 oops")
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"groundtruth\.txt line 7: expected 'timestamp tx ty tz qx qy qz qw'", _one_line(e))


def test_a_depth_png_that_is_not_16_bit(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    path = fx.folder / f"depth/{fx.depth_times[1]:.6f}.png"
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(path)  # 8-bit, as a careless export writes it
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"depth\.txt line 5: \S+\.png is a L image, not a 16-bit depth PNG", _one_line(e))
    with pytest.raises(PipelineError, match="not a 16-bit depth PNG"):
        load_depth(path)


def test_a_mocap_dropout_keeps_the_frames_without_their_pose(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    t = fx.rgb_times[5]
    gt = fx.folder / "groundtruth.txt"
    kept = [ln for ln in gt.read_text().splitlines() if ln.startswith("#") or abs(float(ln.split()[0]) - t) > 0.03]
    gt.write_text("\n".join(kept) + "\n")  # a 60 ms gap in the mocap around frame 5, as TUM's fr1/rpy has
    seq = read_sequence(fx.folder)
    assert len(seq.frames) == len(fx.rgb_times) - 1  # every frame with depth is kept: odometry tracks it
    gap = np.abs(seq.times - t) < 1e-6
    np.testing.assert_array_equal(seq.groundtruth_mask, ~gap)
    assert seq.frames[int(np.nonzero(gap)[0][0])].pose is None
    poses = seq.poses  # a finite placeholder there (a neighbour's pose), never scored
    assert np.isfinite(poses).all() and poses.shape == (len(seq.frames), 4, 4)
    assert read_sequence(fx.folder, tolerance_s=0.04).groundtruth_mask.all()  # widened: every frame has one


def test_ground_truth_that_matches_no_frame(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    _edit(fx.folder / "groundtruth.txt", 4, "1200000000.0000 1.0 2.0 3.0 0.0 0.0 0.0 1.0")
    gt = fx.folder / "groundtruth.txt"
    gt.write_text("\n".join(gt.read_text().splitlines()[:4]) + "\n")  # one sample, hours before the frames
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"groundtruth\.txt: no RGB frame has a pose within 0.02 s; check its timestamps", _one_line(e))
    assert not read_sequence(fx.folder, require_groundtruth=False).has_groundtruth  # odometry alone still reads it


def test_a_non_unit_quaternion(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    _edit(fx.folder / "groundtruth.txt", 10, "1305031102.2000 1.0 2.0 3.0 0.0 0.5 0.0 0.5")
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"groundtruth\.txt line 10: quaternion norm 0\.7071, not a unit quaternion", _one_line(e))


def test_an_empty_sequence(tmp_path: Path) -> None:
    fx = make_tum(tmp_path)
    (fx.folder / "rgb.txt").write_text("# color images\n# timestamp filename\n")
    with pytest.raises(PipelineError) as e:
        read_sequence(fx.folder)
    assert re.search(r"rgb\.txt: lists no frames; the sequence is empty", _one_line(e))
    fx2 = make_tum(tmp_path / "b")
    (fx2.folder / "depth.txt").write_text("# depth maps\n")  # RGB frames, but none with depth
    with pytest.raises(PipelineError, match="no RGB frame has depth within 0.02 s"):
        read_sequence(fx2.folder)


def test_a_sequence_without_ground_truth_reads_only_when_allowed(tmp_path: Path) -> None:
    # The odometry CLI runs on one's own recordings: no groundtruth.txt, and maybe no depth.txt.
    fx = make_tum(tmp_path, n=6, missing=2)
    (fx.folder / "groundtruth.txt").unlink()
    with pytest.raises(PipelineError, match=r"groundtruth\.txt: not found"):
        read_sequence(fx.folder)
    seq = read_sequence(fx.folder, require_groundtruth=False)
    assert len(seq.frames) == 5 and not seq.has_groundtruth  # the frame without depth is still dropped
    assert all(f.pose is None for f in seq.frames)
    with pytest.raises(PipelineError, match="no frame has a ground-truth pose"):
        _ = seq.poses
    (fx.folder / "depth.txt").unlink()
    seq = read_sequence(fx.folder, require_depth=False, require_groundtruth=False)
    assert len(seq.frames) == 6 and all(f.depth_path is None for f in seq.frames)
    np.testing.assert_allclose(seq.times, np.sort(fx.rgb_times))
