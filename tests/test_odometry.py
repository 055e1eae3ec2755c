"""`python -m pipeline.odometry`: a TUM trajectory from a sequence folder or a plain image folder, and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.odometry import main
from pipeline.sequences.layout import list_sequences, read_sequence
from pipeline.trajectory.metrics import score_trajectory
from tests.pose_fixtures import pose_params, pose_setting


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(root, the sequence folder, the model) of a rendered 8-frame sequence and an untrained checkpoint."""
    root = tmp_path_factory.mktemp("odometry")
    pose_setting(root, pose_params())
    return root, list_sequences(root / "data/sequences")[0], root / "models/model.pt"


def _trajectory(path: Path) -> np.ndarray:
    rows = np.loadtxt(path)  # comment lines skipped
    assert rows.ndim == 2 and rows.shape[1] == 8
    return rows


def test_tum_sequence_with_sensor_depth_and_intensities_needs_no_model(setting, tmp_path, capsys) -> None:
    _, seq, _ = setting
    out = tmp_path / "traj.txt"
    assert main([str(seq), "--out", str(out), "--features", "rgb", "--depth", "sensor", "--device", "cpu"]) == 0
    rows = _trajectory(out)
    truth = read_sequence(seq)
    assert len(rows) == len(truth.frames)
    np.testing.assert_allclose(rows[0, 1:], [0, 0, 0, 0, 0, 0, 1], atol=1e-6)  # the first frame at the origin
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "ATE RMSE" in printed
    # Better than standing still, scored the same way (evo, SE(3) alignment).
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    from scipy.spatial.transform import Rotation

    poses[:, :3, :3] = Rotation.from_quat(rows[:, 4:]).as_matrix()
    poses[:, :3, 3] = rows[:, 1:4]
    ours = score_trajectory(truth.times, truth.poses, rows[:, 0], poses, gaps=(1,))["rpe"]["gap_1"]
    still = score_trajectory(truth.times, truth.poses, rows[:, 0], np.tile(np.eye(4), (len(rows), 1, 1)), gaps=(1,))
    assert ours["rot_deg"]["rmse"] < still["rpe"]["gap_1"]["rot_deg"]["rmse"]


def test_plain_image_folder_with_the_network(setting, tmp_path) -> None:
    _, seq, model = setting
    images = tmp_path / "frames"
    images.mkdir()
    for k, f in enumerate(read_sequence(seq).frames[:4]):
        shutil.copy(f.rgb_path, images / f"frame_{k:03d}.png")
    k = read_sequence(seq).intrinsics
    out = tmp_path / "plain.txt"
    args = [str(images), "--out", str(out), "--model", str(model), "--device", "cpu"]
    assert main([*args, "--intrinsics", str(k.fx), str(k.fy), str(k.cx), str(k.cy)]) == 0
    rows = _trajectory(out)
    np.testing.assert_allclose(rows[:, 0], np.arange(4) / 30.0, atol=1e-6)  # frame k at k / fps
    assert np.isfinite(rows).all()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no intrinsics", "needs --intrinsics"),
        ("no frames", "no rgb.txt and no images"),
        ("unreadable image", "frame_001.png: not a readable image"),
        ("not a model", "bogus.pt"),
        ("encoder without model", "add --model"),
        ("sensor depth of a plain folder", "no sensor depth"),
    ],
)
def test_bad_input_is_one_line_naming_what_to_fix(setting, tmp_path, caplog, case, message) -> None:
    _, seq, model = setting
    folder = tmp_path / "frames"
    folder.mkdir()
    if case != "no frames":
        shutil.copy(read_sequence(seq).frames[0].rgb_path, folder / "frame_000.png")
        shutil.copy(read_sequence(seq).frames[1].rgb_path, folder / "frame_001.png")
    if case == "unreadable image":
        (folder / "frame_001.png").write_bytes(b"not a png")
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    args = [str(folder), "--out", str(tmp_path / "t.txt"), "--device", "cpu"]
    args += {"not a model": ["--model", str(bogus)], "encoder without model": [],
             "sensor depth of a plain folder": ["--model", str(model), "--depth", "sensor"]}.get(
        case, ["--model", str(model)])  # fmt: skip
    if case != "no intrinsics":
        args += ["--intrinsics", "100", "100", "64", "48"]
    assert main(args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
    assert not (tmp_path / "t.txt").exists()  # nothing half-written
