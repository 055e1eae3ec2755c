"""timm backbones under the U-Net decoder: shapes, weights from a file or the hub, the offline error, training.

Every backbone is randomly initialised (`pretrained=False`) or loaded from a file the
test writes; nothing here touches the internet (the hub is a local server or a closed port).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from pipeline.config import ModelParams, ParamsError
from pipeline.errors import PipelineError
from pipeline.model import BackboneUNet, UNet, build_model, check_model, encoder_parameters, load_model, save_model
from pipeline.model._timm_compat import import_timm
from pipeline.model.pretrained import encoder_state, fetch_hub_weights, read_weights
from pipeline.training.distributed import DistContext
from pipeline.training.loop import optimise
from pipeline.training.optim import build_optimizer
from pipeline.training.train import build_trainer
from tests.conftest import REPO, model_params, shrunk_params, shrunk_raw, write_params
from tests.e2e_helpers import TINY_SET, clone_project, project_env, run, set_args
from tests.train_helpers import make_root

# The backbones checked (docs/training.md: Encoders): timm's channels and reductions of each feature map.
ENCODERS = {
    "resnet18": ([64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    "resnet34": ([64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    "resnet50": ([64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    "efficientnet_b0": ([16, 24, 40, 112, 320], [2, 4, 8, 16, 32]),
    "convnext_tiny": ([96, 192, 384, 768], [4, 8, 16, 32]),
}


def _cfg(encoder: str = "resnet18", **overrides: object) -> ModelParams:
    return model_params(encoder=encoder, **overrides)


def _images(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A full timm resnet18 state dict (classifier included) in a file, as a user would download it."""
    torch.manual_seed(123)
    state = import_timm().create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


# ---- architecture --------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_every_checked_encoder_builds_and_gives_depth_at_the_input_size(encoder: str) -> None:
    channels, reductions = ENCODERS[encoder]
    torch.manual_seed(0)
    net = build_model(_cfg(encoder, max_depth=5.0)).eval()
    assert isinstance(net, BackboneUNet)
    # A multiple of the largest reduction, and an odd size (padded to 64x96 inside, cropped back).
    for h, w in ((64, 96), (50, 70)):
        x = _images(1, h, w)
        with torch.no_grad():
            feats, out = net.encode(x), net(x)
        assert [tuple(f.shape) for f in feats] == [
            (1, c, 64 // r, 96 // r) for c, r in zip(channels, reductions, strict=True)
        ]
        assert out.shape == (1, 1, h, w) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and (out > 0).all() and (out < 5.0).all()


def test_the_backbone_uses_its_own_normalisation_and_the_shared_head() -> None:
    net = build_model(_cfg(), rgb_mean=(0.5, 0.5, 0.5), rgb_std=(0.2, 0.2, 0.2))
    pcfg = import_timm().models.get_pretrained_cfg("resnet18")
    assert net.rgb_mean.flatten().tolist() == pytest.approx(pcfg.mean)  # not the dataset's stats
    assert net.rgb_std.flatten().tolist() == pytest.approx(pcfg.std)
    assert type(net.head) is type(UNet(model_params()).head)


def test_decoder_widths_follow_base_channels_and_the_reductions() -> None:
    net = build_model(_cfg("convnext_tiny", base_channels=4))
    # Skip levels at 1/4, 1/8, 1/16 -> 4*4, 4*8, 4*16; then skip-free 1/4 -> 1/2 -> 1/1: 8, 4.
    assert [up.conv[0].out_channels for up in net.ups] == [16, 32, 64]
    assert [up.conv[0].out_channels for up in net.tail] == [8, 4]
    assert net.head.conv.in_channels == 4


def test_unknown_encoder_is_a_params_error_with_suggestions() -> None:
    with pytest.raises(ParamsError) as e:
        check_model(_cfg("resnet5"), 32, 48)
    assert "'model.encoder'" in str(e.value) and "resnet50" in str(e.value) and "\n" not in str(e.value)
    check_model(_cfg("resnet18"), 30, 45)  # a backbone takes any size: no error
    with pytest.raises(ParamsError, match="preprocess.height"):
        check_model(model_params(depth=2), 30, 48)  # the plain U-Net still checks divisibility


def test_the_default_unet_never_imports_timm_or_torchvision() -> None:
    code = (
        "import sys, torch; from pipeline.model import build_model, load_model; import pipeline.training.train\n"
        "from tests.conftest import model_params\n"
        "build_model(model_params())(torch.rand(1, 3, 32, 48))\n"
        "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- checkpoints ---------------------------------------------------------------------------


def test_backbone_checkpoint_holds_every_weight_and_loads_without_timm_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    net = build_model(_cfg("efficientnet_b0", pretrained=True)).eval()  # as trained with pretrained weights
    path = tmp_path / "model.pt"
    save_model(path, net, {"epoch": 1})
    assert torch.load(path, weights_only=True)["state_dict"].keys() == net.state_dict().keys()
    timm = import_timm()
    real_create = timm.create_model
    asked: list[object] = []

    def create(*args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("pretrained"))
        return real_create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)
    loaded, meta = load_model(path)
    assert asked == [False]  # rebuilt randomly, then every weight from the file
    assert isinstance(loaded, BackboneUNet) and meta["model_config"]["encoder"] == "efficientnet_b0"
    x = _images(1, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_an_old_checkpoint_without_the_encoder_keys_loads_as_the_plain_unet(tmp_path: Path) -> None:
    net = UNet(model_params()).eval()
    path = tmp_path / "old.pt"
    save_model(path, net, {})
    ckpt = torch.load(path, weights_only=True)
    for key in ("encoder", "pretrained", "weights"):
        del ckpt["model_config"][key]  # as written before model.encoder existed
    torch.save(ckpt, path)
    loaded, _ = load_model(path)
    x = _images(1, 32, 48)
    with torch.no_grad():
        assert isinstance(loaded, UNet) and torch.equal(loaded(x), net(x))


# ---- pretrained weights from a file --------------------------------------------------------


@pytest.mark.parametrize("wrapping", ["plain", "state_dict+module.", "model", "safetensors"])
def test_weights_file_gives_the_encoder_exactly_those_weights(
    resnet18_weights: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, wrapping: str
) -> None:
    src, state = resnet18_weights
    if wrapping == "plain":
        path = src
    elif wrapping == "safetensors":
        import safetensors.torch

        path = tmp_path / "w.safetensors"
        safetensors.torch.save_file(state, str(path))
    else:
        path = tmp_path / "w.pth"
        inner = {f"module.{k}": v for k, v in state.items()} if "module." in wrapping else state
        torch.save({wrapping.split("+")[0]: inner, "epoch": 90}, path)
    rel = Path(os.path.relpath(path, tmp_path))  # relative to the root, as in params.yaml
    init = encoder_state(_cfg(pretrained=True, weights=str(rel)), tmp_path)
    assert init is not None and not any(k.startswith("fc.") for k in init)
    net = build_model(_cfg(pretrained=True, weights=str(rel)), encoder_state=init)
    got = net.encoder.state_dict()
    assert got.keys() <= state.keys() and len(got) > 100
    for k, v in got.items():
        assert torch.equal(v, state[k]), k
    random = build_model(_cfg())
    assert not torch.equal(random.encoder.state_dict()["conv1.weight"], state["conv1.weight"])


def test_bad_weights_files_fail_in_one_line_naming_the_file(
    resnet18_weights: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    _, state = resnet18_weights
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, partial)
    other = tmp_path / "other.pth"
    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, other)
    cases = [
        (tmp_path / "missing.pth", "not found"),
        (garbage, "not a readable state dict"),
        (partial, "missing (e.g. layer4.1."),
        (other, "of another shape (e.g. conv1.weight)"),
    ]
    for path, what in cases:
        with pytest.raises(PipelineError) as e:
            read_weights(path, "resnet18")
        msg = str(e.value)
        assert str(path) in msg and what in msg and "model.weights" in msg and "\n" not in msg, msg


# ---- pretrained weights through the hub ----------------------------------------------------


class _FakeHub(BaseHTTPRequestHandler):
    """The one file of a timm hub repo, with the headers huggingface_hub reads; everything else 404."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _head(self) -> bytes | None:
        self.requests.append(f"{self.command} {self.path}")
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        if body is not None:
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        return body

    def do_HEAD(self) -> None:  # noqa: N802
        self._head()

    def do_GET(self) -> None:  # noqa: N802
        body = self._head()
        if body:
            self.wfile.write(body)


@pytest.fixture()
def fake_hub(resnet18_weights: tuple[Path, dict[str, torch.Tensor]]) -> Iterator[str]:
    import safetensors.torch

    _FakeHub.files = {
        "/timm/resnet18.a1_in1k/resolve/main/model.safetensors": safetensors.torch.save(resnet18_weights[1])
    }
    _FakeHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_weights_are_fetched_into_the_hub_cache_once(
    fake_hub: str, resnet18_weights: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    cache = tmp_path / "hub-cache"
    path = fetch_hub_weights("resnet18", endpoint=fake_hub, cache_dir=cache)
    assert path.is_relative_to(cache) and path.name == "model.safetensors"
    state = read_weights(path, "resnet18", "the hub's file")
    assert all(torch.equal(state[k], v) for k, v in resnet18_weights[1].items() if not k.startswith("fc."))
    seen = len(_FakeHub.requests)
    assert fetch_hub_weights("resnet18", endpoint=fake_hub, cache_dir=cache) == path
    assert len(_FakeHub.requests) == seen  # the second time from the cache, without a request


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


def test_unreachable_hub_fails_the_train_stage_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    make_root(tmp_path)
    write_params(tmp_path, shrunk_raw(model={"encoder": "resnet18", "pretrained": True}))
    port = _closed_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub-cache"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    env.pop("DVC_ROOT", None)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert time.monotonic() - start < 120
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "timm/resnet18.a1_in1k/model.safetensors" in errors[0] and f"127.0.0.1:{port}" in errors[0]
    assert "model.weights: <path>" in errors[0]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*"))


# ---- training ------------------------------------------------------------------------------


def test_pretrained_encoder_trains_at_encoder_lr_mult_and_its_batch_norm_trains(
    resnet18_weights: tuple[Path, dict[str, torch.Tensor]], caplog: pytest.LogCaptureFixture
) -> None:
    summary = {"rgb_mean": [0.5] * 3, "rgb_std": [0.25] * 3}
    params = shrunk_params(model={"encoder": "resnet18", "pretrained": True, "weights": str(resnet18_weights[0])},
                           train={"lr": 0.01, "encoder_lr_mult": 0.1, "warmup_epochs": 0})  # fmt: skip
    init = encoder_state(params.model, REPO)
    with caplog.at_level("WARNING"):
        tr = build_trainer(params, summary, torch.device("cpu"), DistContext(), steps=4, encoder_init=init)
    assert "batch norm" in caplog.text and "train.batch_size 4" in caplog.text  # 4 < 8 images per batch
    groups = tr.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    in_encoder = {id(p) for g in groups[2:] for p in g["params"]}
    assert in_encoder == {id(p) for p in tr.net.encoder.parameters()} == {id(p) for p in encoder_parameters(tr.net)}
    # Batch norm trains: one step moves the backbone's running statistics and its scales.
    bn = tr.net.encoder.bn1
    before = (bn.running_mean.clone(), bn.weight.detach().clone())
    optimise(tr, _images(4, 32, 48), torch.full((4, 1, 32, 48), 2.0))
    assert not torch.equal(bn.running_mean, before[0]) and not torch.equal(bn.weight.detach(), before[1])
    assert groups[0]["lr"] < 0.01 and groups[0]["lr"] / groups[2]["lr"] == pytest.approx(10.0)  # scheduled alike


def test_a_random_backbone_and_the_plain_unet_train_everything_at_train_lr() -> None:
    tp = shrunk_params().train
    for cfg in (_cfg(), model_params()):
        net = build_model(cfg)
        assert encoder_parameters(net) == []
        groups = build_optimizer(net, tp, torch.device("cpu"), encoder_parameters(net)).param_groups
        assert len(groups) == 2 and {g["lr"] for g in groups} == {tp.lr}
        assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_same_seed_gives_identical_backbone_weights_and_outputs_after_a_step() -> None:
    params = shrunk_params(model={"encoder": "resnet18"})
    summary = {"rgb_mean": [0.5] * 3, "rgb_std": [0.25] * 3}
    rgb, depth = _images(2, 32, 48), 1 + 4 * _images(2, 32, 48, seed=2)[:, :1]
    results = []
    for _ in range(2):
        torch.manual_seed(7)
        tr = build_trainer(params, summary, torch.device("cpu"), DistContext(), steps=4)
        optimise(tr, rgb, depth)
        tr.net.eval()
        with torch.no_grad():
            results.append((tr.net.state_dict(), tr.net(rgb)))
    (a, out_a), (b, out_b) = results
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(out_a, out_b)
    torch.manual_seed(8)
    assert not torch.equal(build_model(params.model).state_dict()["encoder.conv1.weight"], a["encoder.conv1.weight"])


def test_weights_param_needs_pretrained_and_pretrained_needs_a_backbone() -> None:
    with pytest.raises(ParamsError, match="'model.weights'"):
        _cfg(weights="w.pth")
    with pytest.raises(ParamsError, match="'model.pretrained'"):
        model_params(pretrained=True)
    assert dataclasses.replace(_cfg(pretrained=True), weights=Path("w.pth")).weights == Path("w.pth")


# ---- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_dvc_exp_run_with_a_resnet18_encoder_from_a_weights_file(
    resnet18_weights: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    repo = clone_project(tmp_path / "proj")
    weights = resnet18_weights[0]
    overrides = [*TINY_SET, "train.epochs=1", "mlflow.enabled=false", "model.encoder=resnet18"]
    overrides += ["model.pretrained=true", f"model.weights={weights}"]
    # Up to evaluate (the report reads only evaluate's files); the hub unreachable, so
    # neither training nor evaluation can have fetched anything.
    env = project_env(repo, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HUB_CACHE=str(tmp_path / "hub"))
    run(["dvc", "exp", "run", *set_args(overrides), "evaluate"], repo, env)
    model, meta = load_model(repo / "models" / "model.pt")  # weights_only loading
    assert isinstance(model, BackboneUNet)
    assert meta["model_config"] == {**meta["model_config"], "encoder": "resnet18", "weights": str(weights)}
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert 0 < metrics["abs_rel"] < float("inf") and metrics["n_images"] > 0
