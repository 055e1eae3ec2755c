"""The alignment term (loss.align): off is today's training, the unrolled solve converges, gradients, params, stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pipeline.camera import NYU_KINECT
from pipeline.config import ParamsError
from pipeline.errors import PipelineError
from pipeline.pose.features import seeded_model
from pipeline.pose.pairs import synthetic_pairs
from pipeline.pose.solver import AlignOptions
from pipeline.pose.unroll import align_loss, encoder_pairs, loss_points, perturb, point_error, reprojection_error
from pipeline.sequences import align_data
from pipeline.sequences.layout import list_sequences, read_sequence
from pipeline.sequences.synthetic import plan_sequence
from pipeline.tracking.names import mlflow_key
from pipeline.training import train as training
from pipeline.training.runlog import ALIGN_COLUMN, COLUMNS
from tests.conftest import SIZE, model_params, shrunk_params, shrunk_raw
from tests.train_helpers import assert_same_state, load_last, make_root

HW = (64, 80)
ON = {"weight": 1.0, "sequences": 1, "frames": 4, "gaps": [1, 2], "pairs_per_step": 2, "iterations": 2}


@pytest.fixture(scope="module")
def pair() -> object:
    """Four rendered pairs at 64x80, 3 cm and 2 degrees apart (the pose tests' renders)."""
    return synthetic_pairs([11, 12, 13, 14], HW, translation_m=0.03, rotation_deg=2.0)


def _net() -> torch.nn.Module:
    """A random (fixed-seed) depth-3 U-Net: its encoder's features are fixed random features."""
    return seeded_model(model_params(base_channels=8, depth=3, norm="group"), [0.5] * 3, [0.25] * 3, seed=0)


def _loss(net: torch.nn.Module, batch, iterations: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    camera = NYU_KINECT.scaled(HW[1], HW[0])
    start = perturb(batch.T, 4.0, 0.04, torch.Generator().manual_seed(0))
    tgt, src = encoder_pairs(net, batch.rgb_tgt, batch.rgb_src, (1, 2, 4, 8))
    loss, errors = align_loss(tgt, src, batch.depth_tgt, batch.T, start, camera, AlignOptions(), iterations)
    X, valid = loss_points(batch.depth_tgt, camera)
    return loss, errors, reprojection_error(start, batch.T, X, valid)


def test_the_unrolled_solve_lowers_the_pose_error_from_the_perturbed_start(pair) -> None:
    with torch.no_grad():
        loss, errors, start = _loss(_net().eval(), pair, iterations=3)
    assert errors.shape == (4, 4) and torch.isfinite(errors).all()  # levels at strides 8, 4, 2, 1 (depth 3)
    assert start.min() > 0.005, start  # a start worth correcting: ~0.3-1.5 degrees of view
    assert (errors[-1] < start).all() and errors[-1].mean() < 0.5 * start.mean(), (errors, start)
    assert errors[-1].mean() < errors[0].mean()  # the finer levels refine the coarsest one's landing
    assert loss.item() > 0 and math.isfinite(loss.item())


def test_the_point_error_counts_translation_along_the_line_of_sight() -> None:
    X = torch.tensor([[[0.0, 0.0, 3.0], [0.5, -0.2, 2.0]]])  # (1, 2, 3) points ahead of the camera
    valid, truth = torch.ones(1, 2, dtype=torch.bool), torch.eye(4)[None]
    along = truth.clone()
    along[0, 2, 3] = 0.01  # 1 cm forward
    assert point_error(along, truth, X, valid).item() == pytest.approx(0.01, rel=1e-4)
    assert reprojection_error(along, truth, X, valid).item() < 0.001  # a 2-D error barely sees it
    assert point_error(truth, truth, X, valid).item() < 1e-5


def test_the_points_loss_trains_finite_gradients(pair) -> None:
    net = _net().train()
    camera = NYU_KINECT.scaled(HW[1], HW[0])
    start = perturb(pair.T, 4.0, 0.04, torch.Generator().manual_seed(0))
    tgt, src = encoder_pairs(net, pair.rgb_tgt, pair.rgb_src, (1, 2, 4, 8))
    loss, errors = align_loss(tgt, src, pair.depth_tgt, pair.T, start, camera, AlignOptions(), 2, "points")
    loss.backward()
    assert errors.shape == (4, 4) and errors[-1].mean() < 0.04  # metres: below the start's bound
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


def test_the_perturbation_stays_within_its_bounds() -> None:
    truth = torch.eye(4).expand(64, 4, 4)
    start = perturb(truth, 5.0, 0.05, torch.Generator().manual_seed(1))
    angle = torch.rad2deg(torch.arccos(((start[:, 0, 0] + start[:, 1, 1] + start[:, 2, 2] - 1) / 2).clamp(-1, 1)))
    assert angle.max() <= 5.0 + 1e-3 and angle.max() > 3.0
    assert start[:, :3, 3].norm(dim=-1).max() <= 0.05 * (1 + math.radians(5)) and start[:, :3, 3].norm(dim=-1).max() > 0


def test_gradients_reach_the_encoder_and_are_finite(pair) -> None:
    net = _net().train()
    loss, _, _ = _loss(net, pair, iterations=2)
    loss.backward()
    encoder = [p for name, p in net.named_parameters() if name.startswith(("stem", "downs"))]
    decoder = [p for name, p in net.named_parameters() if name.startswith(("ups", "head"))]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder)
    assert sum(float(p.grad.abs().sum()) for p in encoder) > 0  # type: ignore[union-attr]
    assert all(p.grad is None for p in decoder)  # the term trains the encoder only


@pytest.mark.parametrize(
    ("key", "value"),
    [("weight", -1.0), ("pairs_per_step", 0), ("iterations", 0), ("iterations", 50), ("perturb_rot_deg", -1),
     ("perturb_trans_m", 2.0), ("gaps", []), ("gaps", [40]), ("sequences", 0), ("frames", 1), ("weight", "high")],
)  # fmt: skip
def test_bad_align_params_name_the_key(key: str, value: object) -> None:
    raw = shrunk_raw()
    raw["loss"]["align"] = {**raw["loss"]["align"], key: value}
    with pytest.raises(ParamsError, match=rf"'loss\.align\.{key}'"):
        shrunk_params(loss=raw["loss"])


def test_the_stage_writes_a_note_when_off_and_rooms_of_their_own_when_on(tmp_path: Path) -> None:
    off = align_data.run(shrunk_params(), tmp_path / "off")
    folder = tmp_path / "off" / "data" / "align_sequences"
    assert off["names"] == [] and [p.name for p in folder.iterdir()] == [align_data.NOTE]
    params = shrunk_params(loss={"align": {**shrunk_raw()["loss"]["align"], **ON, "sequences": 2}})
    on = align_data.run(params, tmp_path / "on")
    seqs = list_sequences(tmp_path / "on" / "data" / "align_sequences")
    assert [s.name for s in seqs] == on["names"] and len(seqs) == 2
    seq = read_sequence(seqs[0])
    assert (seq.intrinsics.height, seq.intrinsics.width) == SIZE and len(seq.frames) >= 3
    # Never an evaluation room, whatever the evaluation seed and count (sequence numbers < 1000).
    rooms = {name.split("_", 2)[2] for name in on["names"]}
    evaluation = {plan_sequence(params.sequences.synthetic, k).scene.name for k in range(4)}
    assert rooms.isdisjoint(evaluation) and all(r.endswith(("101001", "101002")) for r in rooms)


def _train(tmp_path: Path, align: dict) -> tuple[dict, Path]:
    params = shrunk_params(loss={"align": {**shrunk_raw()["loss"]["align"], **align}}, train={"epochs": 1})
    root = make_root(tmp_path)
    align_data.run(params, root)
    return training.run(params, root), root


def test_weight_zero_is_todays_training_and_a_weight_trains_the_term(tmp_path: Path) -> None:
    a, root_a = _train(tmp_path / "a", {"weight": 0.0})
    # Off means off: the term's other params change nothing, and its folder is never read.
    b, root_b = _train(tmp_path / "b", {**ON, "weight": 0.0, "pairs_per_step": 7})
    assert a["final"] == {**b["final"], **{k: a["final"][k] for k in ("images_per_s", "seconds")}}
    assert_same_state(load_last(root_a)["model"], load_last(root_b)["model"])
    header = (root_a / "reports" / "train_log.tsv").read_text().splitlines()[0].split("\t")
    assert header == list(COLUMNS) and ALIGN_COLUMN not in a["final"]
    assert json.loads((root_a / "reports" / "train_metrics.json").read_text()) == {}  # no dvc exp show column
    # On: the same depth batches, other weights, and the term's loss logged per epoch.
    c, root_c = _train(tmp_path / "c", ON)
    assert math.isfinite(c["final"][ALIGN_COLUMN]) and c["final"][ALIGN_COLUMN] > 0
    assert mlflow_key(ALIGN_COLUMN) == "train/align_loss"
    header = (root_c / "reports" / "train_log.tsv").read_text().splitlines()[0].split("\t")
    assert header[:3] == ["epoch", "train_loss", ALIGN_COLUMN]
    shown = json.loads((root_c / "reports" / "train_metrics.json").read_text())  # dvc exp show: train.align_loss
    assert shown == {"train": {"align_loss": pytest.approx(c["final"][ALIGN_COLUMN])}}
    state_a, state_c = load_last(root_a)["model"], load_last(root_c)["model"]
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_weight_on_without_its_sequences_says_what_to_run(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    align_data.run(shrunk_params(), root)  # weight 0: the folder holds only the note
    params = shrunk_params(loss={"align": {**shrunk_raw()["loss"]["align"], **ON}}, train={"epochs": 1})
    with pytest.raises(PipelineError, match="run `dvc repro align_data`"):
        training.run(params, root)
