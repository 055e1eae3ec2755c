"""Typed, self-validating params: `params.yaml` is parsed once into frozen dataclasses.

Every error is a `ParamsError` whose one-line message names the dotted key and says
what is allowed, so a typo in `params.yaml` never surfaces as a traceback from deep
inside the pipeline.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A param is missing, unknown, of the wrong type, or out of range."""


def _check(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ParamsError(f"params: '{key}' is {value!r}; allowed: {allowed}")


@dataclass(frozen=True)
class PathsParams:
    raw_dir: str
    labeled: str
    splits: str
    processed_dir: str
    models_dir: str
    model: str
    run_id: str
    train_log: str
    reports_dir: str
    metrics: str
    per_image: str
    per_scene_type: str
    error_by_depth: str
    predictions: str
    report_md: str
    report_html: str
    figures_dir: str


@dataclass(frozen=True)
class SyntheticParams:
    n_images: int = 96
    seed: int = 0
    test_fraction: float = 0.45

    def validate(self, prefix: str) -> None:
        _check(self.n_images >= 4, f"{prefix}.n_images", "an integer >= 4", self.n_images)
        _check(0 < self.test_fraction < 1, f"{prefix}.test_fraction", "a number in (0, 1)", self.test_fraction)


@dataclass(frozen=True)
class DataParams:
    source: Literal["nyudv2", "synthetic"] = "nyudv2"
    url: str = ""
    splits_url: str = ""
    size: int = 0
    sha256: str = ""
    splits_sha256: str = ""
    retries: int = 5
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)

    def validate(self, prefix: str) -> None:
        for name in ("sha256", "splits_sha256"):
            v = getattr(self, name)
            ok = v == "" or (len(v) == 64 and all(c in "0123456789abcdef" for c in v.lower()))
            _check(ok, f"{prefix}.{name}", "64 hex digits, or '' to skip verification", v)
        _check(self.size >= 0, f"{prefix}.size", "bytes >= 0 (0 = don't check)", self.size)
        _check(self.retries >= 0, f"{prefix}.retries", "an integer >= 0", self.retries)


@dataclass(frozen=True)
class PreprocessParams:
    height: int = 240
    width: int = 320
    val_fraction: float = 0.1
    seed: int = 0

    def validate(self, prefix: str) -> None:
        # NYU frames are 480x640; training above that would only upsample.
        for name, limit in (("height", 480), ("width", 640)):
            v = getattr(self, name)
            _check(16 <= v <= limit, f"{prefix}.{name}", f"an integer in 16..{limit}", v)
        _check(0 <= self.val_fraction < 1, f"{prefix}.val_fraction", "a number in [0, 1)", self.val_fraction)


@dataclass(frozen=True)
class ModelParams:
    base_channels: int = 32
    depth: int = 4
    norm: Literal["batch", "group", "none"] = "batch"
    activation: Literal["relu", "gelu", "silu"] = "relu"
    dropout: float = 0.1
    max_depth: float = 10.0

    def validate(self, prefix: str) -> None:
        _check(1 <= self.base_channels <= 512, f"{prefix}.base_channels", "an integer in 1..512", self.base_channels)
        _check(1 <= self.depth <= 7, f"{prefix}.depth", "an integer in 1..7", self.depth)
        _check(0 <= self.dropout < 1, f"{prefix}.dropout", "a number in [0, 1)", self.dropout)
        _check(self.max_depth > 0, f"{prefix}.max_depth", "metres > 0", self.max_depth)


@dataclass(frozen=True)
class LossParams:
    name: Literal["eigen", "l2", "l2_smooth"] = "eigen"
    lam: float = 0.5  # `lambda` in params.yaml (a Python keyword)
    smoothness: float = 0.001

    def validate(self, prefix: str) -> None:
        _check(
            0 <= self.lam <= 1,
            f"{prefix}.lambda",
            "a number in [0, 1] (0 = L2 on log depth, 1 = fully scale-invariant)",
            self.lam,
        )
        _check(self.smoothness >= 0, f"{prefix}.smoothness", "a number >= 0", self.smoothness)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 2
    weight_decay: float = 1e-4
    amp: bool = True
    compile: bool = False
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    seed: int = 0
    val_every: int = 1
    deterministic: bool = False
    best_metric: Literal["abs_rel", "rmse", "delta1", "silog", "val_loss"] = "abs_rel"
    augment: bool = True

    def validate(self, prefix: str) -> None:
        _check(self.epochs >= 1, f"{prefix}.epochs", "an integer >= 1", self.epochs)
        _check(self.batch_size >= 1, f"{prefix}.batch_size", "an integer >= 1", self.batch_size)
        _check(0 < self.lr < 10, f"{prefix}.lr", "a number in (0, 10)", self.lr)
        _check(self.warmup_epochs >= 0, f"{prefix}.warmup_epochs", "an integer >= 0", self.warmup_epochs)
        _check(self.weight_decay >= 0, f"{prefix}.weight_decay", "a number >= 0", self.weight_decay)
        _check(self.val_every >= 1, f"{prefix}.val_every", "an integer >= 1", self.val_every)


@dataclass(frozen=True)
class EvalParams:
    gt: Literal["raw", "filled"] = "raw"
    crop: Literal["eigen", "none"] = "eigen"
    flip_tta: bool = False
    min_depth: float = 1e-3
    max_depth: float = 10.0
    batch_size: int = 8
    n_examples: int = 6

    def validate(self, prefix: str) -> None:
        _check(self.min_depth > 0, f"{prefix}.min_depth", "metres > 0", self.min_depth)
        _check(
            self.max_depth > self.min_depth,
            f"{prefix}.max_depth",
            f"metres > eval.min_depth ({self.min_depth})",
            self.max_depth,
        )
        _check(self.batch_size >= 1, f"{prefix}.batch_size", "an integer >= 1", self.batch_size)
        _check(self.n_examples >= 0, f"{prefix}.n_examples", "an integer >= 0", self.n_examples)


@dataclass(frozen=True)
class MlflowParams:
    enabled: bool = True
    experiment: str = "nyu-depth-unet"

    def validate(self, prefix: str) -> None:
        _check(bool(self.experiment.strip()), f"{prefix}.experiment", "a non-empty name", self.experiment)


@dataclass(frozen=True)
class Params:
    """All of `params.yaml`, typed. Sections are optional only where a default exists."""

    paths: PathsParams
    data: DataParams = field(default_factory=DataParams)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    model: ModelParams = field(default_factory=ModelParams)
    loss: LossParams = field(default_factory=LossParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)

    def to_flat_dict(self) -> dict[str, Any]:
        """Every param flattened with dotted keys as written in params.yaml (`loss.lambda`)."""
        return flatten(to_yaml_dict(self))


# YAML keys that are Python keywords, mapped to field names.
_RENAMES = {"lambda": "lam"}
_RENAMES_BACK = {v: k for k, v in _RENAMES.items()}


def _type_ok(value: Any, tp: Any) -> tuple[bool, str]:
    """Whether a YAML value fits a field type, and a description of what is allowed."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        return value in choices, " | ".join(map(str, choices))
    if tp is bool:
        return isinstance(value, bool), "true or false"
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if tp is str:
        return isinstance(value, str), "a string"
    if origin in (typing.Union, types.UnionType):
        return value is None or any(_type_ok(value, a)[0] for a in typing.get_args(tp)), str(tp)
    raise TypeError(f"unsupported param type {tp}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"params: '{prefix}' must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        name = _RENAMES.get(key, key)
        if name not in fields:
            allowed = ", ".join(_RENAMES_BACK.get(n, n) for n in fields)
            raise ParamsError(f"params: unknown key '{prefix}.{key}'; allowed keys: {allowed}")
        tp = hints[name]
        dotted = f"{prefix}.{key}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, dotted)
            continue
        ok, allowed = _type_ok(value, tp)
        _check(ok, dotted, allowed, value)
        kwargs[name] = float(value) if tp is float else value
    # Every key must be in params.yaml even where the dataclass has a default: a key that
    # is silently defaulted is invisible to `dvc params diff` and to the MLflow run.
    for name in fields:
        if name not in kwargs:
            key = f"{prefix}.{_RENAMES_BACK.get(name, name)}"
            raise ParamsError(f"params: missing key '{key}'; add it to params.yaml (see the repository's params.yaml)")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def params_from_dict(raw: Any) -> Params:
    """Builds and validates `Params` from the parsed YAML mapping.

    Raises:
        ParamsError: on a missing, unknown, mistyped or out-of-range key.
    """
    if not isinstance(raw, dict):
        raise ParamsError("params: the file must hold a mapping of sections (paths:, data:, ...)")
    hints = typing.get_type_hints(Params)
    for key in raw:
        if key not in hints:
            raise ParamsError(f"params: unknown section '{key}'; allowed sections: {', '.join(hints)}")
    for key in hints:
        if key not in raw:
            raise ParamsError(f"params: missing section '{key}'; add it (see the repository's params.yaml)")
    return Params(**{key: _build(hints[key], value, key) for key, value in raw.items()})


def load_params(path: str | Path = "params.yaml") -> Params:
    """Reads and validates a params file.

    Raises:
        ParamsError: if the file is missing, is not YAML, or a param is invalid.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params: {path} not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"params: {path} is not valid YAML: {e}".replace("\n", " ")) from None
    return params_from_dict(raw)


def to_yaml_dict(obj: Any) -> Any:
    """A params dataclass as the nested dict params.yaml would hold (`lam` back to `lambda`)."""
    if dataclasses.is_dataclass(obj):
        return {_RENAMES_BACK.get(f.name, f.name): to_yaml_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted keys: {"loss": {"lambda": 0.5}} -> {"loss.lambda": 0.5}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
