"""Resuming: an interrupted run finishes with the same weights as an uninterrupted one; changed params start fresh."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.losses import build_loss
from pipeline.training import train as training
from pipeline.training.resume import capture_rng, fingerprint_hash, restore_rng, training_fingerprint
from pipeline.training.runlog import COLUMNS
from tests.conftest import shrunk_params
from tests.train_helpers import assert_same_state, load_best_state, load_last, make_root, without_timing

LAST = Path("models") / "checkpoints" / "last.pt"


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Makes the `call`-th loss evaluation raise KeyboardInterrupt, as Ctrl-C mid-step would."""
    count = {"n": 0}

    def build(loss_params):
        fn = build_loss(loss_params)

        def loss(pred, target, image):
            count["n"] += 1
            if count["n"] == call:
                raise KeyboardInterrupt
            return fn(pred, target, image)

        return loss

    monkeypatch.setattr(training, "build_loss", build)


# 8 train images at batch 4 and 4 val images: 2 train steps + 1 val batch per epoch,
# so loss call 5 is the second step of epoch 2.
MID_EPOCH_2 = 5


def _interrupted_run(root: Path, monkeypatch: pytest.MonkeyPatch, **sections) -> None:
    with monkeypatch.context() as m:
        _interrupt_at(m, MID_EPOCH_2)
        with pytest.raises(KeyboardInterrupt):
            training.run(shrunk_params(**sections), root)
    assert load_last(root)["epoch"] == 1


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = make_root(tmp_path / "whole")
    training.run(shrunk_params(train={"epochs": 3}), whole)

    cut = make_root(tmp_path / "cut")
    _interrupted_run(cut, monkeypatch, train={"epochs": 3})
    (cut / "models" / "model.pt").unlink()  # DVC removes a stage's outputs before re-running it
    result = training.run(shrunk_params(train={"epochs": 3}), cut)

    assert result["resumed_from"] == 1
    a, b = load_last(whole), load_last(cut)
    assert_same_state(a["model"], b["model"])
    assert_same_state(load_best_state(whole), load_best_state(cut))
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert_same_state(sa, sb)
    assert without_timing(a["history"]) == without_timing(b["history"])
    lines = (cut / "reports" / "train_log.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(COLUMNS)
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "2", "3"]  # no duplicate, none missing


def test_changed_training_param_starts_fresh_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_root(tmp_path)
    _interrupted_run(root, monkeypatch)
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        result = training.run(shrunk_params(train={"lr": 0.002}), root)
    assert result["resumed_from"] == 0
    assert "starting fresh" in caplog.text and "train.lr: 0.001 -> 0.002" in caplog.text
    assert [r["epoch"] for r in load_last(root)["history"]] == [1, 2]


def test_params_that_do_not_affect_training_still_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root(tmp_path)
    _interrupted_run(root, monkeypatch)
    result = training.run(shrunk_params(eval={"gt": "filled", "flip_tta": True}, mlflow={"experiment": "other"}), root)
    assert result["resumed_from"] == 1


def test_a_finished_run_is_not_resumed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_root(tmp_path)
    training.run(shrunk_params(train={"epochs": 1}), root)
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        result = training.run(shrunk_params(train={"epochs": 1}), root)
    assert result["resumed_from"] == 0 and "finished run" in caplog.text


def test_unreadable_checkpoint_names_the_file(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / LAST).parent.mkdir(parents=True)
    (root / LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match=r"last\.pt.*delete it"):
        training.run(shrunk_params(), root)


def test_fingerprint_covers_training_params_only() -> None:
    base = fingerprint_hash(training_fingerprint(shrunk_params(), "data"))
    same = [shrunk_params(eval={"gt": "filled", "flip_tta": True, "n_examples": 0}),
            shrunk_params(mlflow={"enabled": True}), shrunk_params(paths={"model": "elsewhere.pt"})]  # fmt: skip
    assert all(fingerprint_hash(training_fingerprint(p, "data")) == base for p in same)
    changed = [shrunk_params(model={"base_channels": 8}), shrunk_params(loss={"lambda": 1.0}),
               shrunk_params(train={"epochs": 3}), shrunk_params(preprocess={"height": 64}),
               shrunk_params(data={"source": "nyudv2"}),
               # Validation scores eval's region: it picks the best epoch.
               shrunk_params(eval={"crop": "none"}), shrunk_params(eval={"max_depth": 8.0})]  # fmt: skip
    assert all(fingerprint_hash(training_fingerprint(p, "data")) != base for p in changed)
    assert fingerprint_hash(training_fingerprint(shrunk_params(), "other data")) != base


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen)  # noqa: B018 (advance the states)
    torch.save(capture_rng({"g": gen}), tmp_path / "rng.pt")

    def draw() -> list[float]:
        return [random.random(), float(np.random.rand()), torch.rand(1).item(), torch.rand(1, generator=gen).item()]

    first = draw()
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True), {"g": gen})
    assert draw() == first
