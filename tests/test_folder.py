"""`data.source: folder`: BTS's and DenseDepth's layouts end to end, the labeled test split, archives, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.data import download, preprocess
from pipeline.data.archive import MARKER
from pipeline.data.datasets import SplitArrays, read_split, read_summary
from pipeline.data.pairs import read_pairs, scene_type_of
from pipeline.data.preprocess import room_of
from pipeline.errors import PipelineError
from pipeline.resample import resize_depth, resize_rgb
from stages._common import run_stage
from tests.conftest import SIZE as TRAIN_SIZE
from tests.conftest import shrunk_raw, write_params
from tests.fixtures_data import stored
from tests.folder_fixtures import (
    SIZE,
    FolderSet,
    decoded_rgb,
    folder_params,
    make_bts,
    make_densedepth,
    params_for,
    png_values,
    save,
    tar_of,
    zip_of,
)
from tests.http_server import LocalHTTPServer
from tests.nyu_fixtures import make_tiny_nyu, tiny_frame, tiny_splits


def _listed(fs_list: Path) -> list[tuple[str, str]]:
    """(rgb, depth) of every line of a list, either format, leading '/' dropped."""
    rows = []
    for line in fs_list.read_text().splitlines():
        fields = line.split(",") if "," in line else line.split()
        rows.append((fields[0].lstrip("/"), fields[1].lstrip("/")))
    return rows


def _check_split(
    part: SplitArrays, rows: list[tuple[str, str]], root: Path, scale: float, size: tuple[int, int] | None
) -> None:
    """Every row of a split file against the files it came from: rgb, depth = png / scale, raw = depth."""
    for k, line in enumerate(part.index):
        rgb_rel, depth_rel = rows[line - 1]
        png = png_values(root / depth_rel)
        depth = png.astype(np.float32) / np.float32(scale)
        rgb = decoded_rgb(root / rgb_rel)
        if size is not None:
            depth, rgb = resize_depth(depth, *size), resize_rgb(rgb, *size)
        np.testing.assert_array_equal(part.depth[k], stored(depth))  # to the millimetre the files keep
        np.testing.assert_array_equal(part.raw_depth[k], stored(depth))  # one depth only: raw = depth
        np.testing.assert_array_equal(part.rgb[k], rgb)


def test_bts_layout_end_to_end(tmp_path: Path) -> None:
    fs = make_bts(tmp_path / "data/raw/bts/sync")
    params = params_for(fs, tmp_path)
    download.run(params, tmp_path)  # no archive, test from the list: only the placeholders
    assert (tmp_path / params.paths.labeled).read_text().startswith("Not NYUDv2")
    summary = preprocess.run(params, tmp_path)
    out = tmp_path / params.paths.processed_dir
    parts = {s: read_split(out / f"{s}.h5") for s in ("train", "val", "test")}
    train_rows, test_rows = _listed(fs.train_list), _listed(fs.test_list)
    # train + val is the whole list, each in list order; val is whole rooms (kitchen_0001a/b together).
    both = np.concatenate([parts["train"].index, parts["val"].index])
    np.testing.assert_array_equal(np.sort(both), np.arange(1, len(train_rows) + 1))
    assert len(parts["val"]) > 0 and (np.diff(parts["train"].index) > 0).all()
    assert not {room_of(s) for s in parts["train"].scene} & {room_of(s) for s in parts["val"].scene}
    assert set(parts["train"].scene) | set(parts["val"].scene) == {
        "kitchen_0001a", "kitchen_0001b", "bedroom_0002", "office_0003", "living_room_0004"
    }  # fmt: skip
    assert "living_room" in set(parts["train"].scene_type) | set(parts["val"].scene_type)
    for s in ("train", "val"):
        assert parts[s].rgb.shape[1:3] == TRAIN_SIZE
        _check_split(parts[s], train_rows, fs.root, 1000.0, TRAIN_SIZE)
    # The test split keeps the files' resolution; 0 (no measurement) stays exactly 0.
    assert parts["test"].rgb.shape[1:3] == SIZE and list(parts["test"].index) == [1, 2, 3, 4]
    _check_split(parts["test"], test_rows, fs.root, 1000.0, None)
    holes = parts["test"].raw_depth == 0
    assert holes.any() and (holes == (np.stack([png_values(fs.root / d) for _, d in test_rows]) == 0)).all()
    assert list(parts["test"].scene_type) == ["bathroom", "bathroom", "study", "study"]
    assert summary == read_summary(out)
    assert summary["source"] == "folder" and summary["test_source"] == "folder"
    assert summary["depth_filled"] == {"train": False, "val": False, "test": False}
    assert summary["counts"]["test"] == 4 and 0.5 <= summary["depth_min"] < summary["depth_max"] < 9.0
    with h5py.File(out / "test.h5") as f:
        assert f.attrs["source"] == "folder"


def test_densedepth_csv_layout(tmp_path: Path) -> None:
    fs = make_densedepth(tmp_path / "data/raw/nyu_data")
    params = params_for(fs, tmp_path)
    preprocess.run(params, tmp_path)
    out = tmp_path / params.paths.processed_dir
    test = read_split(out / "test.h5")
    # DenseDepth's 8-bit PNGs: value / 25.5 = value / 255 * 10 m, as its loader reads them.
    _check_split(test, _listed(fs.test_list), fs.root, 25.5, None)
    assert test.depth.max() <= 10.0 + 1e-6
    # Scenes: the first folder below the shared data/nyu2_train/, without DenseDepth's `_out`.
    train, val = read_split(out / "train.h5"), read_split(out / "val.h5")
    assert {*train.scene, *val.scene} == {"kitchen_0001a", "kitchen_0001b", "bedroom_0002", "office_0003",
                                          "living_room_0004"}  # fmt: skip
    _check_split(train, _listed(fs.train_list), fs.root, 25.5, TRAIN_SIZE)


def test_test_split_from_the_labeled_mat(tmp_path: Path) -> None:
    fs = make_bts(tmp_path / "data/raw/bts/sync")
    labeled, splits = make_tiny_nyu(tmp_path / "nyu", n=8, n_test=3)
    data = {"url": str(labeled), "splits_url": str(splits), "size": 0, "sha256": "", "splits_sha256": ""}
    params = params_for(fs, tmp_path, data=data, test_from="labeled", test_list="")
    download.run(params, tmp_path)  # fetches (hard-links) the labeled file and its split, as nyudv2 does
    summary = preprocess.run(params, tmp_path)
    out = tmp_path / params.paths.processed_dir
    test = read_split(out / "test.h5")
    np.testing.assert_array_equal(test.index, tiny_splits(8, 3)[1])  # the official test indices
    for k, idx in enumerate(test.index):  # exactly as the nyudv2 source writes it: filled and raw
        frame = tiny_frame(int(idx) - 1)
        np.testing.assert_array_equal(test.rgb[k], frame.rgb)
        np.testing.assert_array_equal(test.depth[k], stored(frame.depth))
        np.testing.assert_array_equal(test.raw_depth[k], stored(frame.raw_depth))
        assert test.scene[k] == frame.scene
    assert summary["test_source"] == "nyudv2" and summary["depth_filled"]["test"] is True
    assert summary["counts"] == {"train": len(read_split(out / "train.h5")), "val": len(read_split(out / "val.h5")),
                                 "test": 3}  # fmt: skip
    with h5py.File(out / "test.h5") as f:
        assert f.attrs["source"] == "nyudv2"


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_fetched_from_mirrors_unpacked_and_kept(tmp_path: Path, kind: str) -> None:
    src = make_bts(tmp_path / "src" / "sync")  # lists beside it, as BTS's repository ships them
    blob = zip_of(src.root) if kind == "zip" else tar_of(src.root)
    with LocalHTTPServer({"/sync.bin": blob}) as srv:
        mirrors = [srv.url("/gone.zip"), srv.url("/sync.bin")]  # the first mirror is dead (404)
        params = params_for(src, tmp_path, root="data/raw/bts/sync", unpack_dir="data/raw/bts", url=mirrors,
                            sha256=hashlib.sha256(blob).hexdigest())  # fmt: skip
        download.run(params, tmp_path)
        unpacked = tmp_path / "data/raw/bts"
        assert (unpacked / MARKER).is_file() and (unpacked / "sync/kitchen_0001a/rgb_00000.jpg").is_file()
        assert not (tmp_path / "data/raw/bts.archive").exists()  # deleted once unpacked
        assert not list((tmp_path / "data/raw").glob(".bts.*"))  # no staging folder left
        n_requests = len(srv.requests)
        download.run(params, tmp_path)  # complete and from the same archive: kept, nothing fetched
        assert len(srv.requests) == n_requests
    preprocess.run(params, tmp_path)
    test = read_split(tmp_path / params.paths.processed_dir / "test.h5")
    _check_split(test, _listed(src.test_list), unpacked / "sync", 1000.0, None)


def test_list_parsing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    for rel in ("a/x/1.jpg", "a/x/1.png", "a/y/2.jpg", "a/y/2.png", "3.jpg", "3.png"):
        save(root / rel, np.zeros((4, 4, 3) if rel.endswith("jpg") else (4, 4), np.uint8))
    lst = tmp_path / "l.txt"
    lst.write_text("# a comment\n\n/a/x/1.jpg /a/x/1.png 518.8\na/y/2.jpg None 518.8\na/y/2.jpg a/y/2.png\n")
    with caplog.at_level(logging.WARNING):
        pairs = read_pairs(lst, root)
    assert [(p.line, p.rgb, p.scene) for p in pairs] == [(3, "a/x/1.jpg", "x"), (5, "a/y/2.jpg", "y")]
    assert "skipped 1 line(s) whose depth is None" in caplog.text
    lst.write_text("a/x/1.jpg a/x/1.png\n")  # one folder for every pair: that folder is the scene
    assert read_pairs(lst, root)[0].scene == "x"
    lst.write_text("3.jpg,3.png\n")  # files directly in the root take the root's name
    assert read_pairs(lst, root)[0].scene == "root"
    assert scene_type_of("living_room_0038") == "living_room" and scene_type_of("my_lab") == "my_lab"


def _bad_input(fs: FolderSet) -> dict:
    """Each bad input: (how to make it, what the one-line error must say)."""
    first_rgb, first_depth = (fs.root / p for p in _listed(fs.train_list)[0])
    return {
        "missing file": (lambda: first_depth.unlink(), "line 1: no such file"),
        "size mismatch": (lambda: save(first_depth, np.zeros((10, 10), np.uint16)), "line 1: RGB"),
        "8-bit depth at mm scale": (lambda: save(first_depth, np.zeros(SIZE, np.uint8)), "line 1: depth"),
        "empty list": (lambda: fs.train_list.write_text("# nothing\n"), "holds no pairs"),
        "unreadable image": (lambda: first_rgb.write_bytes(b"not a jpeg"), "line 1: cannot read image"),
        "truncated image": (lambda: first_rgb.write_bytes(first_rgb.read_bytes()[:-600]), "line 1: cannot decode"),
        "duplicated pair": (lambda: fs.train_list.write_text(fs.train_list.read_text() * 2), "repeats the RGB"),
        "malformed line": (lambda: fs.train_list.write_text("only_one_field.jpg\n"), "line 1: expected"),
        "test frame in train": (lambda: fs.test_list.write_text(fs.train_list.read_text()), "list the same image"),
    }


BAD_INPUTS = [
    "missing file",
    "size mismatch",
    "8-bit depth at mm scale",
    "empty list",
    "unreadable image",
    "truncated image",
    "duplicated pair",
    "malformed line",
    "test frame in train",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_list_and_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    fs = make_bts(tmp_path / "data/raw/bts/sync")
    params = params_for(fs, tmp_path)
    out = tmp_path / params.paths.processed_dir
    out.mkdir(parents=True)
    (out / "old.txt").write_text("a previous good output")
    make, expected = _bad_input(fs)[case]
    make()
    with pytest.raises(PipelineError) as e:
        preprocess.run(params, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and expected in msg, msg
    assert fs.train_list.name in msg or fs.test_list.name in msg, msg
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]  # the previous output untouched
    assert not list(out.parent.glob(".processed.*"))  # no staging folder left


def test_stage_error_is_one_log_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fs = make_bts(tmp_path / "data/raw/bts/sync")
    (fs.root / _listed(fs.train_list)[2][0]).unlink()  # line 3's RGB
    write_params(tmp_path, shrunk_raw(data={"source": "folder", "folder": folder_params(fs, tmp_path)}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e, caplog.at_level(logging.ERROR):
        run_stage("preprocess", preprocess.run)
    assert e.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"{fs.train_list} line 3: no such file" in errors[0]
    assert not (tmp_path / "data/processed").exists()


def test_a_wrong_depth_scale_for_8_bit_pngs_is_caught(tmp_path: Path) -> None:
    fs = make_densedepth(tmp_path / "data/raw/nyu_data")
    with pytest.raises(PipelineError, match=r"nyu2_train\.csv line 1: depth .* is 8-bit, but data.folder.depth_scale"):
        preprocess.run(params_for(fs, tmp_path, depth_scale=1000.0), tmp_path)


def test_depth_image_that_is_not_single_channel_is_rejected(tmp_path: Path) -> None:
    fs = make_bts(tmp_path / "data/raw/bts/sync")
    depth = fs.root / _listed(fs.test_list)[1][1]
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(depth)
    with pytest.raises(PipelineError, match=r"test_files_with_gt\.txt line 2: depth .* is a RGB image"):
        preprocess.run(params_for(fs, tmp_path), tmp_path)


def test_train_and_evaluate_on_a_folder_run_and_the_report_says_filled_means_raw(tmp_path: Path) -> None:
    import json

    from pipeline.report.document import protocol_text, published_section
    from stages import evaluate, train

    fs = make_bts(tmp_path / "data/raw/bts/sync")
    params = params_for(fs, tmp_path)
    params = dataclasses.replace(params, eval=dataclasses.replace(params.eval, gt="filled"))
    for stage in (download, preprocess, train, evaluate):  # raw depth with holes as the training target
        stage.run(params, tmp_path)
    metrics = json.loads((tmp_path / params.paths.metrics).read_text())
    assert metrics["source"] == "folder" and metrics["test_source"] == "folder"
    assert metrics["test_depth_filled"] is False and metrics["n_images"] == 4
    assert all(np.isfinite(metrics[k]) for k in ("abs_rel", "rmse", "delta1"))
    assert "`eval.gt: filled` scores the raw depth here" in protocol_text(metrics, params)
    omitted = published_section(metrics, params)[1].text
    assert "omitted: this run used the 'folder' data source" in omitted


def test_report_shows_published_results_when_the_test_split_is_the_official_one() -> None:
    from pipeline.metrics import METRIC_NAMES
    from pipeline.report.document import protocol_text, published_section
    from tests.conftest import shrunk_params

    protocol = {"gt": "filled", "crop": "eigen", "flip_tta": False, "min_depth": 0.001, "max_depth": 10.0}
    metrics = {**dict.fromkeys(METRIC_NAMES, 0.5), "n_images": 654, "protocol": protocol, "source": "folder",
               "test_source": "nyudv2", "test_depth_filled": True}  # fmt: skip
    params = shrunk_params()
    assert "**filled** (in-painted) depth of the labeled set" in protocol_text(metrics, params)
    blocks = published_section(metrics, params)
    assert len(blocks) > 2 and "data.folder.train_list" in blocks[1].text  # the table, our training data named
