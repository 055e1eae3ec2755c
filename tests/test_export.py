"""ONNX export: dynamic batch/height/width, checked against PyTorch, clear errors, atomic output."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx  # the `onnx` extra, which `make test` installs (part of `dev`)
import onnxruntime as ort
import pytest
import torch

from pipeline import export
from pipeline.export import main
from pipeline.model import BackboneUNet, UNet, load_model, save_model
from tests.conftest import model_params

TRAIN_HW = (32, 48)  # the test U-Net has depth 2: sizes must be multiples of 4


def _save(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = UNet(model_params(dropout=0.0, norm="batch")).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding them wrongly would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    save_model(path, model, {"params": {"preprocess": {"height": TRAIN_HW[0], "width": TRAIN_HW[1]}}, "epoch": 3})
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def exported(model_path, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("onnx") / "sub" / "model.onnx"
    return out, export.export_model(model_path, out)


def test_export_checks_two_sizes_and_prints_the_figure(model_path, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "m.onnx"
    assert main(["--model", str(model_path), "--onnx", str(out)]) == 0
    lines = [r.getMessage() for r in caplog.records if "max relative error" in r.getMessage()]
    assert len(lines) == 2 and "batch 1 at 32x48" in lines[0] and "batch 2 at 16x28" in lines[1]
    assert all(float(line.rsplit(" ", 1)[1]) < 1e-3 for line in lines)
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left


def test_onnx_model_has_dynamic_axes_and_matches_pytorch_at_other_sizes(model_path, exported):
    path, results = exported
    assert [(r["batch"], r["height"], r["width"]) for r in results] == [(1, 32, 48), (2, 16, 28)]
    assert all(r["max_rel_error"] < 1e-3 for r in results)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape) == ("rgb", ["batch", 3, "height", "width"])
    assert (outp.name, outp.shape) == ("depth", ["batch", 1, "height", "width"])
    model, _ = load_model(model_path)
    x = torch.rand(3, 3, 20, 64, generator=torch.Generator().manual_seed(1))  # a size and batch not checked at export
    with torch.no_grad():
        ref = model(x).numpy()  # (3, 1, 20, 64)
    got = session.run(None, {"rgb": x.numpy()})[0]
    assert got.shape == (3, 1, 20, 64)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["train_height"] == "32" and meta["train_width"] == "48" and meta["size_multiple"] == "4"


def test_a_size_the_model_does_not_accept_is_one_line_and_writes_nothing(model_path, tmp_path, caplog):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    assert main(["--model", str(model_path), "--onnx", str(out), "--check-sizes", "32x48", "30x50"]) == 1
    (msg,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert (
        "30x50" in msg
        and "multiples of 4 (2**model.depth, model.depth is 2)" in msg
        and "28 or 32" in msg
        and "48 or 52" in msg
    )
    assert "\n" not in msg
    assert main(["--model", str(model_path), "--onnx", str(out), "--check-sizes", "32by48"]) == 1
    assert "HEIGHTxWIDTH" in caplog.text
    assert out.read_bytes() == b"previous export" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_graph_that_disagrees_with_pytorch_is_not_written(model_path, tmp_path, monkeypatch, caplog):
    """The check can fail: export another model's weights and the comparison catches it."""
    other, _ = load_model(_save(tmp_path / "other.pt", seed=1))
    real_export = export._export
    monkeypatch.setattr(export, "_export", lambda model, path, hw: real_export(other, path, hw))
    out = tmp_path / "bad.onnx"
    assert main(["--model", str(model_path), "--onnx", str(out)]) == 1
    assert "disagrees with PyTorch" in caplog.text and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_missing_model_is_one_line_exit_1(tmp_path, caplog):
    """In-process main(): an exception escaping it (a traceback for the user) would fail this test too."""
    missing = tmp_path / "nope.pt"
    assert main(["--model", str(missing), "--onnx", str(tmp_path / "m.onnx")]) == 1
    (msg,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert str(missing) in msg and "\n" not in msg
    assert not (tmp_path / "m.onnx").exists()


# A TracerWarning means the trace froze a branch on the sample's size (the pad check once did).
@pytest.mark.filterwarnings("error::torch.jit.TracerWarning")
def test_a_backbone_model_exports_at_multiples_of_its_stride(tmp_path, caplog):
    """A timm backbone pads other sizes in PyTorch; the graph takes multiples of its stride, checked at two."""
    torch.manual_seed(0)
    net = BackboneUNet(model_params(encoder="resnet18", base_channels=4, dropout=0.0)).eval()
    path = tmp_path / "bb.pt"
    save_model(path, net, {"params": {"preprocess": {"height": 48, "width": 80}}, "epoch": 1})
    results = export.export_model(path, tmp_path / "bb.onnx")
    # 48x80 traced as 64x96 (rounded up to the stride 32), then a second size of another aspect
    assert [(r["height"], r["width"]) for r in results] == [(64, 96), (32, 64)]
    assert all(r["max_rel_error"] < 1e-3 for r in results)
    session = ort.InferenceSession(str(tmp_path / "bb.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(session.run(None, {"rgb": x.numpy()})[0], ref, rtol=1e-4, atol=1e-6)
    assert main(["--model", str(path), "--onnx", str(tmp_path / "x.onnx"), "--check-sizes", "48x80"]) == 1
    assert "multiples of 32 (the largest stride of model.encoder 'resnet18')" in caplog.text
