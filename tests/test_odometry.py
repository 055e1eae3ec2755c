"""`python -m pipeline.odometry`: a TUM trajectory from a sequence folder or a plain image folder, and its errors."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.camera import Intrinsics
from pipeline.odometry import _args, better, load, main, options_for, track
from pipeline.pose.frames import load_frames
from pipeline.pose.solver import AlignOptions, AlignResult, point_budget
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
        ("negative depth weight", "--depth-weight -1.0: give a weight in [0, 100]"),
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
             "sensor depth of a plain folder": ["--model", str(model), "--depth", "sensor"],
             "negative depth weight": ["--model", str(model), "--depth-weight", "-1"]}.get(
        case, ["--model", str(model)])  # fmt: skip
    if case != "no intrinsics":
        args += ["--intrinsics", "100", "100", "64", "48"]
    assert main(args) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
    assert not (tmp_path / "t.txt").exists()  # nothing half-written


REAL = Path(__file__).parent / "fixtures" / "rgbd_dataset_freiburg1_rpy_real"


@pytest.mark.parametrize("depth_weight", ["0", "1"])
def test_real_tum_frames_are_tracked_within_a_measured_bound(tmp_path, capsys, depth_weight: str) -> None:
    # Ten real fr1/rpy frames (455-465, development range) at 96x128 around a mocap dropout.
    # Measured on 2026-12-08: ATE 0.0053 m, RPE 0.594 deg photometric alone, 0.0053 m and 0.595 deg with
    # the geometric term at weight 1; standing still scores ATE 0.0089 m, RPE 1.97 deg. The bounds leave
    # ~40 % margin and still fail for a tracker no better than standing still.
    out = tmp_path / "real.txt"
    args = [str(REAL), "--out", str(out), "--features", "rgb", "--depth", "sensor", "--size", "96", "128",
            "--depth-weight", depth_weight]  # fmt: skip
    assert main([*args, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    got = re.search(
        r"ATE RMSE ([\d.]+) m .*RPE per frame [\d.]+ m, ([\d.]+) deg; scored 8/10 frames, 5/9 pairs", printed
    )
    assert got, printed
    ate, rot = float(got.group(1)), float(got.group(2))
    assert ate < 0.0085 and rot < 1.0, printed
    assert len(_trajectory(out)) == 10  # every frame tracked, the two without ground truth too


def test_retry_keeps_the_solve_that_explains_more_not_the_lower_huber_cost(monkeypatch) -> None:
    # Each solve sets its own Huber scale, so a solve stuck far off (large residuals, large scale) can
    # show the smaller mean Huber cost; the residual ratio needs no scale.
    frames = load_frames(read_sequence(REAL), (96, 128), 2)

    def result(tx: float, residual: float, ratio: float) -> AlignResult:
        T = torch.eye(4)[None].clone()
        T[0, 0, 3] = tx
        one = torch.ones(1)
        return AlignResult(T, torch.zeros(1, dtype=torch.bool), residual * one, ratio * one,
                           torch.full((1,), 80), 0.9 * one, torch.full((1,), 4), torch.eye(6)[None])  # fmt: skip

    solves = iter([result(0.3, residual=0.2, ratio=0.9), result(0.01, residual=0.5, ratio=0.1)])
    monkeypatch.setattr("pipeline.odometry.align", lambda *a, **k: next(solves))
    odo = track(frames, None, "rgb", "sensor", AlignOptions(), torch.device("cpu"))
    assert odo.poses[1][0, 3] == pytest.approx(-0.01, abs=1e-6)  # the second solve's motion, inverted
    assert better(result(0.0, 9.0, 0.5), result(0.0, 0.1, 0.5))  # a tie keeps the first
    converged = replace(result(0.0, 9.0, 0.9), converged=torch.ones(1, dtype=torch.bool))
    assert better(result(0.0, 0.1, 0.1), converged) is converged


def test_intrinsics_flag_wins_over_calibration_txt_and_help_shows_defaults(capsys) -> None:
    given = load(_args([str(REAL), "--out", "x.txt", "--intrinsics", "100", "101", "60", "45"]), (48, 64))
    assert given.intrinsics == Intrinsics(100, 101, 60, 45, 128, 96).scaled(64, 48)  # the flag's, scaled
    from_file = load(_args([str(REAL), "--out", "x.txt"]), (96, 128))
    assert from_file.intrinsics.fx == pytest.approx(517.3 / 5)  # calibration.txt: freiburg1's at 128x96
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "(default: encoder)" in shown and "(default: nearest)" in shown and "(default: 240 320)" in shown
    assert "wins over calibration.txt" in shown and "(default: None)" not in shown


def test_keyframe_tracking_keeps_a_keyframe_while_it_holds_and_tracks_no_worse() -> None:
    frames = load_frames(read_sequence(REAL), (96, 128), 0)
    args = (frames, None, "rgb", "sensor", AlignOptions(), torch.device("cpu"))
    key, f2f = track(*args), track(*args, keyframes=False)
    assert key.keyframes is not None and f2f.keyframes is not None
    assert f2f.keyframes[:-1].all() and 1 <= key.keyframes.sum() < len(frames) - 1  # some frames share a keyframe
    m = frames.has_groundtruth
    ate = [score_trajectory(frames.times[m], frames.poses[m], o.times, o.poses, gaps=())["ate"]["se3"]["rmse_m"]
           for o in (key, f2f)]  # fmt: skip
    assert ate[0] < 0.0085 and ate[0] <= 1.1 * ate[1]  # measured 0.0053 against 0.0059 frame-to-frame


def test_points_per_level_grow_with_the_working_size() -> None:
    # 4096 a level is 5.3 % of 240x320 but 1.3 % of 480x640, where real frames then tracked worse (docs/pose.md).
    budget = [point_budget(hw, options_for(hw)) for hw in [(96, 128), (240, 320), (480, 640)]]
    assert budget == [4096, 4096, 16384]  # scaled once, by the solver (not again by the CLI)
    assert options_for((240, 320), 7).iterations == 7


def test_encoder_projection_per_pair_or_per_keyframe(setting, monkeypatch) -> None:
    """--projection keyframe prepares each keyframe once (one preparation a keyframe), pair prepares none."""
    import pipeline.odometry as odometry
    from pipeline.model import load_model

    _, seq, model_path = setting
    model = load_model(model_path)[0]
    frames = load_frames(read_sequence(seq), (96, 128), 5)
    calls = []
    real = odometry.prepare_target
    monkeypatch.setattr(odometry, "prepare_target", lambda *a, **k: calls.append(1) or real(*a, **k))
    runs = {}
    for projection in ("pair", "keyframe"):
        calls.clear()
        runs[projection] = track(frames, model, "encoder", "sensor", AlignOptions(), torch.device("cpu"),
                                 projection=projection)  # fmt: skip
        assert len(calls) == (0 if projection == "pair" else int(runs[projection].keyframes.sum()))
    m = frames.has_groundtruth
    for o in runs.values():
        ate = score_trajectory(frames.times[m], frames.poses[m], o.times, o.poses, gaps=())["ate"]["se3"]["rmse_m"]
        still = score_trajectory(frames.times[m], frames.poses[m], o.times, np.tile(np.eye(4), (len(o.times), 1, 1)),
                                 gaps=())["ate"]["se3"]["rmse_m"]  # fmt: skip
        assert np.isfinite(o.poses).all() and ate < still, (ate, still)
    with pytest.raises(SystemExit):
        _args(["x", "--out", "y", "--projection", "pixel"])
