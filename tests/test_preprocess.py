"""The preprocess stage: split files, val carving, resize semantics, summary, atomicity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.config import PreprocessParams
from pipeline.data import preprocess as pp
from pipeline.data.datasets import SplitWriter, read_split, read_summary
from pipeline.data.matlab import write_splits_mat
from pipeline.errors import PipelineError
from stages import preprocess as stage
from stages._common import run_stage
from tests.conftest import shrunk_raw, write_params
from tests.fixtures_data import stored
from tests.nyu_fixtures import make_tiny_nyu, tiny_frame, tiny_splits

REPO = Path(__file__).resolve().parents[1]
PARAMS = PreprocessParams(height=48, width=64, val_fraction=0.25, seed=0)
MM = 5e-4  # depth is stored in whole millimetres: at most half of one off


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_nyu(tmp_path_factory.mktemp("raw"), n=12, n_test=4)


@pytest.fixture(scope="module")
def processed(raw: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "processed"
    return out, pp.preprocess(*raw, out, PARAMS, "synthetic")


def test_split_files(processed: tuple[Path, dict]) -> None:
    out, _ = processed
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "test.h5", "train.h5", "val.h5"]
    want_train, want_test = tiny_splits(12, 4)
    parts = {s: read_split(out / f"{s}.h5") for s in ("train", "val", "test")}
    np.testing.assert_array_equal(parts["test"].index, want_test)
    # train + val is exactly the official training split, each keeping its order.
    np.testing.assert_array_equal(np.sort(np.concatenate([parts["train"].index, parts["val"].index])), want_train)
    for s in ("train", "val"):
        assert parts[s].rgb.shape[1:] == (48, 64, 3) and parts[s].depth.shape[1:] == (48, 64)
        assert (np.diff(parts[s].index) > 0).all()
    assert parts["test"].rgb.shape[1:] == (480, 640, 3) and parts["test"].raw_depth.shape[1:] == (480, 640)
    for k, idx in enumerate(parts["test"].index):  # test is the raw frame (depth to the mm), right way up
        want = tiny_frame(int(idx) - 1)
        np.testing.assert_array_equal(parts["test"].rgb[k], want.rgb)
        np.testing.assert_allclose(parts["test"].raw_depth[k], want.raw_depth, rtol=0, atol=MM)
        np.testing.assert_array_equal(parts["test"].raw_depth[k] == 0, want.raw_depth == 0)  # holes stay holes
        assert parts["test"].scene[k] == want.scene and parts["test"].scene_type[k] == want.scene_type
    assert not set(parts["train"].scene) & set(parts["val"].scene)  # scene-disjoint
    with h5py.File(out / "val.h5") as f:
        assert dict(f.attrs) == {"split": "val", "height": 48, "width": 64, "source": "synthetic"}
    assert not list(out.parent.glob(".processed*"))  # no staging folder left behind


def test_train_rows_are_resized_frames(processed: tuple[Path, dict]) -> None:
    out, _ = processed
    train = read_split(out / "train.h5")
    for k, idx in enumerate(train.index):
        src = tiny_frame(int(idx) - 1)
        assert train.rgb[k][0, 0].tolist() == [255, 255, 255]  # the top-left marker stays top-left
        assert train.rgb[k][24, 0, 0] < 16 and train.rgb[k][24, -1, 0] > 240  # red still rises to the right
        assert np.isin(train.depth[k], stored(src.depth)).all()  # nearest: no invented depths
        assert np.isin(train.raw_depth[k], stored(src.raw_depth)).all() and (train.raw_depth[k] == 0).any()


def test_summary(processed: tuple[Path, dict]) -> None:
    out, summary = processed
    assert read_summary(out) == json.loads(json.dumps(summary))
    parts = {s: read_split(out / f"{s}.h5") for s in ("train", "val", "test")}
    assert summary["source"] == "synthetic" and (summary["height"], summary["width"]) == (48, 64)
    assert summary["counts"] == {s: len(p) for s, p in parts.items()}
    for s, p in parts.items():
        types, counts = np.unique(p.scene_type, return_counts=True)
        assert summary["scene_types"][s] == dict(zip(types.tolist(), counts.tolist(), strict=True))
    x = parts["train"].rgb.reshape(-1, 3) / 255.0  # reference: all train pixels at once
    np.testing.assert_allclose(summary["rgb_mean"], x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(summary["rgb_std"], x.std(0), rtol=1e-6)
    all_depth = np.concatenate([p.depth.ravel() for p in parts.values()])
    assert summary["depth_min"] == pytest.approx(float(all_depth.min()), abs=MM)
    assert summary["depth_max"] == pytest.approx(float(all_depth.max()), abs=MM)


def test_deterministic_and_seeded(raw: tuple[Path, Path], processed: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = processed
    again = pp.preprocess(*raw, tmp_path / "again", PARAMS, "synthetic")
    assert again == summary
    for s in ("train", "val", "test"):
        a, b = read_split(out / f"{s}.h5"), read_split(tmp_path / "again" / f"{s}.h5")
        for field in ("rgb", "depth", "raw_depth", "index", "scene"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    train_idx, _ = tiny_splits(12, 4)
    scenes = [tiny_frame(i).scene for i in range(12)]
    vals = {tuple(pp.split_train_val(train_idx, scenes, 0.25, seed)[1]) for seed in range(8)}
    assert len(vals) > 1  # the seed picks the scenes


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.99])
def test_split_train_val_by_scene(fraction: float) -> None:
    rng = np.random.default_rng(1)
    scenes = [f"s{k // 3}" for k in range(60)]  # 20 scenes of 3 frames
    train_idx = np.sort(rng.choice(np.arange(1, 61), 40, replace=False))
    train, val = pp.split_train_val(train_idx, scenes, fraction, seed=3)
    n_scenes = len({scenes[i - 1] for i in train_idx})  # "s3" has no recording letter: scene = room
    val_scenes = {scenes[i - 1] for i in val}
    assert len(val_scenes) == min(max(1, round(fraction * n_scenes)), n_scenes - 1)
    assert not val_scenes & {scenes[i - 1] for i in train}
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), train_idx)
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()  # order kept


def test_room_of_strips_the_recording_letter() -> None:
    assert pp.room_of("basement_0001a") == pp.room_of("basement_0001b") == "basement_0001"
    assert pp.room_of("kitchen_0028") == "kitchen_0028"
    assert pp.room_of("study_room_0004") == "study_room_0004"


@pytest.mark.parametrize("seed", range(6))
def test_split_train_val_keeps_sibling_recordings_together(seed: int) -> None:
    # 8 rooms; rooms 0-3 recorded twice ("a", "b"), 2 frames per recording.
    scenes = [f"basement_{k:04d}{r}" for k in range(4) for r in "ab" for _ in range(2)]
    scenes += [f"office_{k:04d}" for k in range(4) for _ in range(2)]
    train_idx = np.arange(1, len(scenes) + 1)
    train, val = pp.split_train_val(train_idx, scenes, 0.25, seed)
    val_rooms = {pp.room_of(scenes[i - 1]) for i in val}
    train_rooms = {pp.room_of(scenes[i - 1]) for i in train}
    assert len(val_rooms) == 2 and not val_rooms & train_rooms
    # Every recording of a val room is in val, its sibling included.
    assert {scenes[i - 1] for i in val} == {s for s in scenes if pp.room_of(s) in val_rooms}


def test_rgb_stats_streaming() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    stats = pp.RgbStats()
    for im in images:
        stats.update(im)
    mean, std = stats.mean_std()
    x = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-9)


def test_rows_follow_split_order(raw: tuple[Path, Path], tmp_path: Path) -> None:
    splits = tmp_path / "splits.mat"
    write_splits_mat(splits, np.array([12, 1, 2, 3, 4, 7, 8]), np.array([10, 5, 9]))
    out = tmp_path / "out"
    pp.preprocess(raw[0], splits, out, PARAMS, "synthetic")
    test = read_split(out / "test.h5")
    assert test.index.tolist() == [10, 5, 9]
    np.testing.assert_array_equal(test.rgb[1], tiny_frame(4).rgb)  # index 5 = 5th frame (0-based 4)
    train, val = read_split(out / "train.h5"), read_split(out / "val.h5")
    order = [12, 1, 2, 3, 4, 7, 8]
    for part in (train, val):
        assert [order.index(i) for i in part.index] == sorted(order.index(i) for i in part.index)


def _good_out(tmp_path: Path) -> Path:
    out = tmp_path / "processed"
    out.mkdir()
    (out / "summary.json").write_text('{"good": true}')
    return out


def _assert_untouched(out: Path) -> None:
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == '{"good": true}'
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_bad_labeled_leaves_outputs_alone(raw: tuple[Path, Path], tmp_path: Path) -> None:
    v5 = tmp_path / "v5.mat"
    scipy.io.savemat(v5, {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(PipelineError, match="is not MATLAB v7.3/HDF5"):
        pp.preprocess(v5, raw[1], tmp_path / "fresh", PARAMS, "nyudv2")
    assert not (tmp_path / "fresh").exists()
    out = _good_out(tmp_path)
    with pytest.raises(PipelineError, match="is not MATLAB v7.3/HDF5"):
        pp.preprocess(v5, raw[1], out, PARAMS, "nyudv2")
    _assert_untouched(out)


def test_bad_splits_leave_outputs_alone(raw: tuple[Path, Path], tmp_path: Path) -> None:
    out = _good_out(tmp_path)
    splits = tmp_path / "splits.mat"
    write_splits_mat(splits, np.array([1, 2, 13]), np.array([4]))
    with pytest.raises(PipelineError, match=r"'trainNdxs' has indices out of 1..12"):
        pp.preprocess(raw[0], splits, out, PARAMS, "nyudv2")
    write_splits_mat(splits, np.array([1, 2, 3]), np.array([3, 4]))
    with pytest.raises(PipelineError, match="share 1 indices"):
        pp.preprocess(raw[0], splits, out, PARAMS, "nyudv2")
    with pytest.raises(PipelineError, match="preprocess.val_fraction=0.0"):
        pp.preprocess(raw[0], raw[1], out, PreprocessParams(48, 64, 0.0, 0), "nyudv2")
    _assert_untouched(out)


def test_stale_staging_from_killed_run_is_removed(raw: tuple[Path, Path], tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".processed.{int(dead.stdout)}.tmp"  # as left by a run killed with -9
    stale.mkdir()
    (stale / "train.h5").write_bytes(b"partial")
    pp.preprocess(*raw, tmp_path / "processed", PARAMS, "synthetic")
    assert not stale.exists() and (tmp_path / "processed" / "summary.json").is_file()


def test_failure_mid_write_leaves_outputs_alone(
    raw: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _good_out(tmp_path)
    calls = []
    real_write = SplitWriter.write

    def flaky(self, i, *args):  # noqa: ANN001, ANN202
        calls.append(i)
        if len(calls) == 9:  # train and val done, test half-written
            raise OSError("disk full")
        real_write(self, i, *args)

    monkeypatch.setattr(SplitWriter, "write", flaky)
    with pytest.raises(OSError, match="disk full"):
        pp.preprocess(raw[0], raw[1], out, PARAMS, "nyudv2")
    _assert_untouched(out)


def test_stage_entry_point(raw: tuple[Path, Path], tmp_path: Path) -> None:
    params = shrunk_raw()  # 32x48, synthetic
    params["paths"].update(labeled=str(raw[0]), splits=str(raw[1]), processed_dir=str(tmp_path / "processed"))
    write_params(tmp_path, params)
    run_stage("preprocess", stage.run, params_path=str(tmp_path / "params.yaml"))
    summary = read_summary(tmp_path / "processed")
    assert (summary["height"], summary["width"], summary["source"]) == (32, 48, "synthetic")
    params["paths"]["splits"] = str(raw[0])  # a v7.3 file where splits.mat belongs
    write_params(tmp_path, params)
    with pytest.raises(SystemExit) as e:
        run_stage("preprocess", stage.run, params_path=str(tmp_path / "params.yaml"))
    assert e.value.code == 1
    assert read_summary(tmp_path / "processed") == summary  # the good output survived


def test_frames_of_another_size_keep_it_in_the_test_split(tmp_path: Path) -> None:
    # The synthetic source can render smaller frames (data.synthetic.height/width): the test
    # split stays at the file's own frame size, train/val at the training size.
    from pipeline.config import SyntheticParams
    from pipeline.synthetic.dataset import iter_frames, write_synthetic_nyu

    synthetic = SyntheticParams(n_images=10, seed=1, test_fraction=0.45, height=72, width=96)
    labeled, splits = tmp_path / "labeled.mat", tmp_path / "splits.mat"
    write_synthetic_nyu(labeled, splits, synthetic)
    out = tmp_path / "processed"
    pp.preprocess(labeled, splits, out, PARAMS, "synthetic")
    frames = list(iter_frames(synthetic))
    test, train = read_split(out / "test.h5"), read_split(out / "train.h5")
    assert test.rgb.shape[1:] == (72, 96, 3) and train.rgb.shape[1:] == (48, 64, 3)
    for k, idx in enumerate(test.index):
        np.testing.assert_array_equal(test.rgb[k], frames[int(idx) - 1].rgb)
        np.testing.assert_array_equal(test.raw_depth[k], stored(frames[int(idx) - 1].raw_depth))  # to the mm


def test_frames_smaller_than_the_training_size_are_upsampled_with_a_warning(tmp_path: Path, caplog) -> None:
    from pipeline.config import SyntheticParams
    from pipeline.synthetic.dataset import write_synthetic_nyu

    synthetic = SyntheticParams(n_images=10, seed=1, test_fraction=0.45, height=24, width=32)
    labeled, splits = tmp_path / "labeled.mat", tmp_path / "splits.mat"
    write_synthetic_nyu(labeled, splits, synthetic)
    with caplog.at_level("WARNING", logger="pipeline.data.preprocess"):
        pp.preprocess(labeled, splits, tmp_path / "processed", PARAMS, "synthetic")
    assert "frames are 24x32, smaller than preprocess.height x width 48x64" in caplog.text
    assert read_split(tmp_path / "processed" / "train.h5").rgb.shape[1:] == (48, 64, 3)
