"""The NYUDv2 raw-file writers (`pipeline.data.matlab`) and reader (`pipeline.data.nyu`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.data.matlab import HEIGHT, WIDTH, Frame, write_labeled_mat, write_splits_mat
from pipeline.data.nyu import NyuLabeled, read_splits
from pipeline.errors import PipelineError
from tests.nyu_fixtures import MARKER, make_tiny_nyu, tiny_frame, tiny_splits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tiny_nyu(tmp_path_factory.mktemp("nyu"), n=6, n_test=2)


def _matlab_cell(f: h5py.File, name: str, strings: list[str]) -> None:
    """A cell array of char written by hand (as MATLAB does), independent of the writer."""
    refs = f.require_group("#refs#")
    ds = f.create_dataset(name, (1, len(strings)), dtype=h5py.ref_dtype)
    for k, s in enumerate(strings):
        ch = refs.create_dataset(f"{name}{k}", data=np.array([[ord(c)] for c in s], np.uint16))
        ch.attrs["MATLAB_class"] = np.bytes_("char")
        ch.attrs["MATLAB_int_decode"] = np.int32(2)
        ds[0, k] = ch.ref


def test_column_major_file_reads_right_way_up(tmp_path: Path) -> None:
    # Build the arrays as MATLAB holds them, (480,640,3,N), and store their column-major
    # bytes, which is what MATLAB writes: the reader must give back images(:,:,:,i) as is.
    n = 2
    rgb = np.zeros((HEIGHT, WIDTH, 3, n), np.uint8)
    rgb[:, :, 0, :] = np.linspace(0, 200, WIDTH, dtype=np.uint8)[None, :, None]  # red rises to the right
    rgb[:MARKER, :MARKER, :, 0] = 255  # top-left marker on frame 1 only
    rgb[:, :, 1, 1] = np.linspace(0, 200, HEIGHT, dtype=np.uint8)[:, None]  # frame 2: green rises downwards
    depth = np.broadcast_to(np.arange(HEIGHT, dtype=np.float32)[:, None, None] / 100, (HEIGHT, WIDTH, n))
    as_stored = lambda a: np.frombuffer(a.tobytes(order="F"), a.dtype).reshape(a.shape[::-1])  # noqa: E731
    path = tmp_path / "hand.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = as_stored(rgb)
        f["depths"] = as_stored(np.ascontiguousarray(depth))
        f["rawDepths"] = as_stored(np.ascontiguousarray(depth))
        _matlab_cell(f, "scenes", ["a_0001", "b_0002"])
        _matlab_cell(f, "sceneTypes", ["a", "b"])
    with NyuLabeled(path) as nyu:
        assert len(nyu) == n
        for i in range(n):
            fr = nyu.frame(i)
            np.testing.assert_array_equal(fr.rgb, rgb[..., i])
            np.testing.assert_array_equal(fr.depth, depth[..., i])
        first, second = nyu.frame(0), nyu.frame(1)
    assert (first.rgb[:MARKER, :MARKER] == 255).all() and first.rgb[-1, -1, 0] == 200 and first.rgb[0, -1, 1] == 0
    assert second.rgb[0, 0, 1] == 0 and second.rgb[-1, 0, 1] == 200  # not flipped upside down
    assert first.depth[0, 5] == 0 and first.depth[-1, 5] == pytest.approx((HEIGHT - 1) / 100)
    assert (first.scene, second.scene_type) == ("a_0001", "b")


def test_writer_round_trip_and_raw_layout(tiny: tuple[Path, Path]) -> None:
    labeled, _ = tiny
    with NyuLabeled(labeled) as nyu:
        assert len(nyu) == 6
        for i in range(6):
            got, want = nyu.frame(i), tiny_frame(i)
            for field in ("rgb", "depth", "raw_depth"):
                np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
            assert (got.scene, got.scene_type) == (want.scene, want.scene_type)
            assert got.rgb.flags.c_contiguous and got.depth.dtype == np.float32
    with h5py.File(labeled, "r") as f:
        # The transpose done by hand on a raw h5py read, as docs/ARCHITECTURE.md states it.
        np.testing.assert_array_equal(np.transpose(f["images"][3], (2, 1, 0)), tiny_frame(3).rgb)
        np.testing.assert_array_equal(f["depths"][3].T, tiny_frame(3).depth)
        assert f["images"][0][0, WIDTH - 1, 0] == 255  # channel red, x = right edge, y = top row
        assert f["images"].shape == (6, 3, WIDTH, HEIGHT) and f["depths"].shape == (6, WIDTH, HEIGHT)
        assert f["images"].attrs["MATLAB_class"] == b"uint8" and f["rawDepths"].attrs["MATLAB_class"] == b"single"
        scenes = f["scenes"]
        assert scenes.shape == (1, 6) and scenes.attrs["MATLAB_class"] == b"cell"
        ch = f[scenes[0, 2]]
        assert ch.name.startswith("/#refs#/") and ch.dtype == np.uint16 and ch.shape == (len("kitchen_0002"), 1)
        assert ch.attrs["MATLAB_class"] == b"char" and ch.attrs["MATLAB_int_decode"] == 2
        assert "".join(map(chr, ch[:, 0])) == "kitchen_0002"


def test_matlab_header(tiny: tuple[Path, Path]) -> None:
    labeled, splits = tiny
    head = labeled.read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: ")
    assert head[:116].rstrip().endswith(b"HDF5 schema 1.00 .")
    assert head[124:128] == b"\x00\x02IM"
    assert scipy.io.matlab.matfile_version(str(labeled)) == (2, 0)  # scipy sees v7.3
    assert scipy.io.matlab.matfile_version(str(splits))[0] == 1  # v5


def test_scene_strings_non_ascii_and_empty(tmp_path: Path) -> None:
    base = tiny_frame(0)
    frames = [Frame(base.rgb, base.depth, base.raw_depth, s, t) for s, t in (("café_0001", "café"), ("", "x"))]
    write_labeled_mat(tmp_path / "l.mat", frames, 2, gzip=None)
    with NyuLabeled(tmp_path / "l.mat") as nyu:
        assert nyu.scenes() == ["café_0001", ""] and nyu.scene_types() == ["café", "x"]


def test_writer_rejects_wrong_count_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.mat"
    with pytest.raises(ValueError, match="expected n=3"):
        write_labeled_mat(path, (tiny_frame(i) for i in range(2)), 3, gzip=None)
    bad = Frame(tiny_frame(0).rgb[:10], tiny_frame(0).depth, tiny_frame(0).raw_depth, "s", "t")
    with pytest.raises(ValueError, match="rgb has shape"):
        write_labeled_mat(path, [bad], 1, gzip=None)
    assert list(tmp_path.iterdir()) == []


def test_splits_round_trip_one_based(tmp_path: Path) -> None:
    train, test = np.array([1, 4, 3]), np.array([2, 6])
    write_splits_mat(tmp_path / "s.mat", train, test)
    raw = scipy.io.loadmat(tmp_path / "s.mat")
    assert raw["trainNdxs"].dtype == np.uint16 and raw["trainNdxs"].shape == (3, 1)
    got_train, got_test = read_splits(tmp_path / "s.mat", 6)
    np.testing.assert_array_equal(got_train, train)  # file order kept, still 1-based
    np.testing.assert_array_equal(got_test, test)


def test_split_index_one_is_first_frame(tiny: tuple[Path, Path]) -> None:
    labeled, splits = tiny
    train, test = read_splits(splits, 6)
    want_train, want_test = tiny_splits(6, 2)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)
    with NyuLabeled(labeled) as nyu:
        np.testing.assert_array_equal(nyu.frame(int(test[0]) - 1).rgb, tiny_frame(int(test[0]) - 1).rgb)
    assert 1 in np.concatenate([train, test]) and 6 in np.concatenate([train, test])


def _edit(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace(name: str, shape: tuple[int, ...], dtype: type):
    def edit(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, shape, dtype)

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda f: f.__delitem__("depths"), "missing dataset 'depths'"),
        (_replace("images", (6, 3, HEIGHT, WIDTH), np.uint8), r"'images' has shape \(6, 3, 480, 640\)"),
        (_replace("rawDepths", (5, WIDTH, HEIGHT), np.float32), "'rawDepths' has shape"),
        (_replace("images", (6, 3, WIDTH, HEIGHT), np.float32), "'images' has dtype float32; expected uint8"),
        (_replace("depths", (6, WIDTH, HEIGHT), np.uint16), "'depths' has dtype uint16"),
        (_replace("scenes", (1, 6), np.uint16), "'scenes' is uint16"),
    ],
)
def test_labeled_bad_layout(tiny: tuple[Path, Path], tmp_path: Path, edit, match: str) -> None:
    bad = _edit(tiny[0], tmp_path / "bad.mat", edit)
    with pytest.raises(PipelineError, match=match) as e:
        NyuLabeled(bad)
    assert str(bad) in str(e.value) and "dvc repro download" in str(e.value)


def test_labeled_not_hdf5(tmp_path: Path) -> None:
    text = tmp_path / "text.mat"
    text.write_text("<html>404 not found</html>")
    with pytest.raises(PipelineError, match=r"text.mat: is not MATLAB v7.3/HDF5 \(not HDF5\)"):
        NyuLabeled(text)
    v5 = tmp_path / "v5.mat"
    scipy.io.savemat(v5, {"images": np.zeros((4, 4), np.uint8)})
    with pytest.raises(PipelineError, match=r"v5.mat: is not MATLAB v7.3/HDF5 \(a MATLAB v5 MAT-file\)"):
        NyuLabeled(v5)
    with pytest.raises(PipelineError, match="not found"):
        NyuLabeled(tmp_path / "absent.mat")


@pytest.mark.parametrize(
    ("mdict", "match"),
    [
        ({"trainNdxs": [[1], [2]]}, "missing 'testNdxs'"),
        ({"trainNdxs": [[1], [7]], "testNdxs": [[3]]}, r"'trainNdxs' has indices out of 1..6 \(e.g. 7\)"),
        ({"trainNdxs": [[0], [2]], "testNdxs": [[3]]}, r"out of 1..6 \(e.g. 0\)"),
        ({"trainNdxs": [[1], [2]], "testNdxs": [[2], [3]]}, "share 1 indices"),
        ({"trainNdxs": [[1], [1]], "testNdxs": [[3]]}, "'trainNdxs' lists some image twice"),
        ({"trainNdxs": [[1.5], [2.0]], "testNdxs": [[3]]}, "non-integer"),
        ({"trainNdxs": np.zeros((2, 2)), "testNdxs": [[3]]}, r"shape \(2, 2\)"),
    ],
)
def test_splits_bad(tmp_path: Path, mdict: dict, match: str) -> None:
    path = tmp_path / "splits.mat"
    scipy.io.savemat(path, {k: np.asarray(v) for k, v in mdict.items()})
    with pytest.raises(PipelineError, match=match) as e:
        read_splits(path, 6)
    assert str(path) in str(e.value)


def test_splits_float_indices_accepted_and_not_mat(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    path = tmp_path / "splits.mat"
    scipy.io.savemat(path, {"trainNdxs": np.array([[1.0], [2.0]]), "testNdxs": np.array([[3.0]])})
    train, test = read_splits(path, 6)
    assert train.tolist() == [1, 2] and test.tolist() == [3] and train.dtype == np.int64
    with pytest.raises(PipelineError, match="not a readable MATLAB v5 MAT-file"):
        read_splits(tiny[0], 6)  # the v7.3 labeled file given as splits
