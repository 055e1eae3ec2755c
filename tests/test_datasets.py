"""The processed split files: depth stored as compressed uint16 millimetres, read back as metres."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.data.datasets import DEPTH_SCALE, SplitReader, SplitWriter, decode_depth, encode_depth, read_split
from pipeline.errors import PipelineError


def _write(path: Path, depths: list[np.ndarray]) -> Path:
    h, w = depths[0].shape
    with SplitWriter(path, len(depths), h, w, "train", "synthetic") as wr:
        for i, d in enumerate(depths):
            rgb = np.full((h, w, 3), i, np.uint8)
            wr.write(i, rgb, d, np.where(d > 3, 0, d), i + 1, f"room_{i:04d}", "room")
    return path


def test_depth_round_trips_to_the_millimetre_and_holes_stay_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 9.9, (2, 24, 32)).astype(np.float32)
    depth[0, 0, :4] = [0.0, 0.0004, 0.0006, 65.535]  # a hole, rounding down to 0 and up to 1 mm, the top
    got = read_split(_write(tmp_path / "s.h5", list(depth)))
    np.testing.assert_allclose(got.depth, depth, rtol=0, atol=0.5 / DEPTH_SCALE + 1e-6)
    assert got.depth.dtype == np.float32 and got.depth[0, 0, :4].tolist() == pytest.approx([0, 0, 0.001, 65.535])
    holes = (depth > 3) | (depth < 0.5 / DEPTH_SCALE)  # set where depth > 3, or rounding to 0 mm
    np.testing.assert_array_equal(got.raw_depth == 0, holes)
    again = decode_depth(encode_depth(got.depth, "x"), DEPTH_SCALE)  # whole millimetres already: a fixed point
    np.testing.assert_array_equal(again, got.depth)


def test_depth_is_stored_as_deflated_uint16_millimetres(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(1, 4, 64, dtype=np.float32), (48, 1))  # (48, 64) a ramp: compresses well
    path = _write(tmp_path / "s.h5", [smooth] * 4)
    with h5py.File(path) as f:
        for name in ("depth", "raw_depth"):
            ds = f[name]
            assert ds.dtype == np.uint16 and ds.attrs["depth_scale"] == DEPTH_SCALE
            assert ds.compression == "gzip" and ds.shuffle and ds.chunks == (1, 48, 64)
        assert f["depth"].id.get_storage_size() < 4 * 48 * 64 * 2 / 4  # < a quarter of raw uint16


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), 65.6])
def test_a_depth_that_cannot_be_stored_names_the_frame(tmp_path: Path, bad: float) -> None:
    depth = np.ones((8, 8), np.float32)
    depth[3, 3] = bad
    with pytest.raises(PipelineError, match=r"train frame 2 \(scene room_0001\) depth: depth .* cannot be stored"):
        _write(tmp_path / "s.h5", [np.ones((8, 8), np.float32), depth])


def test_files_of_the_older_float32_layout_read_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    depth = np.random.default_rng(1).uniform(0.5, 9, (3, 8, 12)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("rgb", data=np.zeros((3, 8, 12, 3), np.uint8))
        f.create_dataset("depth", data=depth)
        f.create_dataset("raw_depth", data=depth)
        f.create_dataset("index", data=np.arange(1, 4, dtype=np.int32))
        for k in ("scene", "scene_type"):
            f.create_dataset(k, data=np.array(["a", "b", "c"], dtype=h5py.string_dtype("utf-8")))
    np.testing.assert_array_equal(read_split(path).depth, depth)
    np.testing.assert_array_equal(SplitReader(path).rgb_depth(np.array([2, 0]))[1], depth[[2, 0]])


def test_reader_returns_rows_in_the_order_asked_and_rejects_repeats(tmp_path: Path) -> None:
    depths = [np.full((4, 6), 1.0 + i, np.float32) for i in range(5)]
    reader = SplitReader(_write(tmp_path / "s.h5", depths))
    assert (len(reader), reader.hw) == (5, (4, 6))
    rgb, depth = reader.rgb_depth(np.array([3, 0, 4]))
    assert rgb[:, 0, 0, 0].tolist() == [3, 0, 4] and depth[:, 0, 0].tolist() == [4.0, 1.0, 5.0]
    with pytest.raises(ValueError, match="repeat"):
        reader.rgb_depth(np.array([1, 1]))
    reader.close()


def test_encode_decode_are_inverse_on_whole_millimetres() -> None:
    mm = np.arange(0, 65536, 97, dtype=np.uint16)
    np.testing.assert_array_equal(encode_depth(decode_depth(mm, DEPTH_SCALE), "x"), mm)


def test_a_source_without_filled_depth_stores_its_depth_once(tmp_path: Path) -> None:
    depth = np.random.default_rng(2).uniform(0.5, 9, (3, 16, 24)).astype(np.float32)
    paths = {}
    for once in (False, True):
        paths[once] = tmp_path / f"once_{once}.h5"
        with SplitWriter(paths[once], 3, 16, 24, "train", "folder", raw_is_depth=once) as wr:
            for i in range(3):
                wr.write(i, np.zeros((16, 24, 3), np.uint8), depth[i], None if once else depth[i], i + 1, "a", "b")
    with h5py.File(paths[True]) as f:
        assert f["raw_depth"] == f["depth"]  # the same dataset under two names (a hard link)
    with h5py.File(paths[False]) as f:
        assert f["raw_depth"] != f["depth"]
    once, twice = read_split(paths[True]), read_split(paths[False])
    np.testing.assert_array_equal(once.raw_depth, once.depth)
    np.testing.assert_array_equal(once.depth, twice.depth)
    np.testing.assert_array_equal(once.raw_depth, twice.raw_depth)
