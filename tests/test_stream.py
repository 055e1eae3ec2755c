"""Training data placement (`train.data`): streamed batches equal resident ones, auto's choice, shards."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.datasets import SplitReader, read_split
from pipeline.training import placement
from pipeline.training import train as training
from pipeline.training.device_data import epoch_batches, load_split_to_device
from pipeline.training.distributed import DistContext
from pipeline.training.resume import training_fingerprint
from pipeline.training.stream_data import open_stream_split, stream_workers
from tests.conftest import shrunk_params
from tests.fixtures_data import make_processed_dir
from tests.train_helpers import assert_same_state, load_best_state, load_last, make_root, without_timing


def test_streamed_run_ends_bit_identical_to_a_resident_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # Two epochs with augmentation, validation every epoch: every random draw and every batch counts.
    runs = {}
    for mode in ("device", "stream"):
        params = shrunk_params(train={"data": mode, "epochs": 2, "val_every": 1})
        runs[mode] = training.run(params, make_root(tmp_path / mode, n_train=10))
    assert "streaming from" in caplog.text and "loader worker(s) per rank" in caplog.text
    history = {m: load_last(tmp_path / m)["history"] for m in runs}
    assert without_timing(history["stream"]) == without_timing(history["device"])
    assert_same_state(load_last(tmp_path / "stream")["model"], load_last(tmp_path / "device")["model"])
    assert_same_state(load_best_state(tmp_path / "stream"), load_best_state(tmp_path / "device"))


def test_stream_batches_equal_resident_batches_and_keep_the_drawn_order(tmp_path: Path) -> None:
    proc = make_processed_dir(tmp_path, n_train=9, n_val=2, n_test=1)
    dev, stream = torch.device("cpu"), open_stream_split(proc / "train.h5", torch.device("cpu"), 1)
    resident = load_split_to_device(proc / "train.h5", dev)
    assert (len(stream), stream.hw) == (len(resident), resident.hw) == (9, (32, 48))
    batches = [torch.tensor([7, 2, 5]), torch.tensor([0, 8]), torch.tensor([4])]  # unsorted: order matters
    got = list(stream.batches(batches))
    want = list(resident.batches(batches))
    assert len(got) == len(want) == 3
    for (g_rgb, g_depth), (w_rgb, w_depth) in zip(got, want, strict=True):
        assert g_rgb.dtype == torch.float32 and g_rgb.is_contiguous() and g_depth.shape[1] == 1
        assert torch.equal(g_rgb, w_rgb) and torch.equal(g_depth, w_depth)
    arrays = read_split(proc / "train.h5")  # and the rows are the file's rows 7, 2, 5
    np.testing.assert_array_equal(got[0][0].permute(0, 2, 3, 1).mul(255).round().byte().numpy(), arrays.rgb[[7, 2, 5]])


def test_each_rank_streams_only_its_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = make_processed_dir(tmp_path, n_train=12, n_val=2, n_test=1)
    read: list[list[int]] = []
    original = SplitReader.rgb_depth

    def spy(self: SplitReader, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        read.append(rows.tolist())
        return original(self, rows)

    monkeypatch.setattr(SplitReader, "rgb_depth", spy)
    split = open_stream_split(proc / "train.h5", torch.device("cpu"), world_size=2)
    split = type(split)(split.path, split.n, split.shape, split.device, workers=0)  # in-process: the spy sees it
    seen = {}
    for rank in (0, 1):
        ctx = DistContext(rank=rank, world_size=2)
        batches = epoch_batches(len(split), 3, ctx, torch.Generator().manual_seed(4))  # (2, 3): this rank's column
        read.clear()
        list(split.batches(batches))
        assert read == batches.tolist()
        seen[rank] = {i for b in read for i in b}
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 12


def test_auto_keeps_the_split_on_the_device_when_it_fits_and_streams_otherwise() -> None:
    mode, why = placement.choose("auto", need=400, free=1000)
    assert mode == "device" and "auto -> device" in why and "50%" in why
    mode, why = placement.choose("auto", need=600, free=1000)
    assert mode == "stream" and "auto -> stream" in why
    assert placement.choose("stream", need=1, free=10**12)[0] == "stream"  # explicit modes are obeyed
    assert placement.choose("device", need=10**12, free=1)[0] == "device"


def test_auto_on_a_real_split_logs_its_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proc = make_processed_dir(tmp_path, n_train=4, n_val=2, n_test=1)
    need = placement.resident_bytes([proc / "train.h5", proc / "val.h5"])
    assert need == 6 * 32 * 48 * (3 + 4)
    splits, mode = placement.load_splits("auto", proc, torch.device("cpu"), 1)
    assert mode == "device" and "auto -> device" in caplog.text and len(splits["train"]) == 4
    monkeypatch.setattr(placement, "free_bytes", lambda device: need)  # only twice the share: stream
    splits, mode = placement.load_splits("auto", proc, torch.device("cpu"), 1)
    assert mode == "stream" and "auto -> stream" in caplog.text and len(splits["val"]) == 2


def test_loader_workers_leave_the_main_process_its_cores() -> None:
    assert stream_workers(1, cpu_count=2) == 1
    assert stream_workers(1, cpu_count=16) == 8
    assert stream_workers(8, cpu_count=16) == 1
    assert stream_workers(4, cpu_count=16) == 3


def test_placement_does_not_change_the_resume_fingerprint() -> None:
    a = training_fingerprint(shrunk_params(train={"data": "device"}), "x")
    b = training_fingerprint(shrunk_params(train={"data": "stream"}), "x")
    assert a == b
    assert a != training_fingerprint(shrunk_params(train={"data": "stream", "seed": 3}), "x")
