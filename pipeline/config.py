"""Typed, self-validating params: `params.yaml` parsed once into frozen dataclasses.

One dataclass per section, one field per key, each field's docstring saying what it
does and why (params.yaml carries the short form). Every key is required: a key that
was silently defaulted would be invisible to `dvc params diff` and to the MLflow run.
Validation happens once, where an object is made (`__post_init__`), from YAML or in
code alike, and every error is a `ParamsError` whose one line names the dotted key and
says what is allowed. The allowed values of a choice are its `Literal` type, declared
once here; other modules read them with `choices(...)`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

Source = Literal["nyudv2", "synthetic", "folder"]
TestFrom = Literal["list", "labeled"]
Norm = Literal["batch", "group", "none"]
Activation = Literal["relu", "gelu", "silu"]
LossName = Literal["eigen", "l2", "l2_smooth"]
OptimizerName = Literal["adamw", "sgd"]
Schedule = Literal["cosine", "constant"]
DeviceName = Literal["auto", "cuda", "mps", "cpu"]
AmpMode = Literal["auto", "bf16", "off"]
BestMetric = Literal["abs_rel", "rmse", "delta1", "silog", "val_loss"]
GroundTruth = Literal["raw", "filled"]
Crop = Literal["eigen", "none"]
TrainData = Literal["auto", "device", "stream"]
SequenceSource = Literal["synthetic", "tum", "folder"]
AlignError = Literal["reprojection", "points"]


def choices(literal: Any) -> tuple[str, ...]:
    """The allowed values of a `Literal` type, e.g. `choices(Norm)` -> ("batch", "group", "none")."""
    return typing.get_args(literal)


class ParamsError(ValueError):
    """A param is missing, unknown, of the wrong type, or out of range."""


# YAML keys that are Python keywords, mapped to field names.
_RENAMES = {"lambda": "lam"}
_RENAMES_BACK = {v: k for k, v in _RENAMES.items()}


def _type_ok(value: Any, tp: Any) -> tuple[bool, str]:
    """Whether a value fits a field type, and a description of what is allowed."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp), " | ".join(map(str, typing.get_args(tp)))
    if tp is bool:
        return isinstance(value, bool), "true or false"
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if tp is str:
        return isinstance(value, str), "a string"
    if tp is Path:
        return isinstance(value, (str, Path)) and str(value) != "", "a path"
    if origin is list:
        (item,) = typing.get_args(tp)
        ok = isinstance(value, list) and all(_type_ok(v, item)[0] for v in value)
        return ok, "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(item, str(item))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        ok = (value is None and len(options) < len(typing.get_args(tp))) or any(_type_ok(value, a)[0] for a in options)
        return ok, " or ".join(_type_ok(None, a)[1] for a in options)
    raise TypeError(f"unsupported param type {tp}")


class Section:
    """Base of every params section: type checks, coercion and range checks on creation.

    Subclasses set `KEY` (their dotted place in params.yaml) and yield
    `(field, ok, allowed)` from `_ranges()`.
    """

    KEY: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value, tp = getattr(self, f.name), hints[f.name]
            if dataclasses.is_dataclass(tp):
                if not isinstance(value, typing.cast(type, tp)):
                    raise ParamsError(f"params: '{self.key(f.name)}' must be a mapping of keys, got {value!r}")
                continue
            ok, allowed = _type_ok(value, tp)
            self._fail_unless(ok, f.name, allowed)
            if tp is float:
                object.__setattr__(self, f.name, float(value))  # YAML `1` is an int
            elif tp is Path or (value is not None and tp == Path | None):
                object.__setattr__(self, f.name, Path(value))
        for name, ok, allowed in self._ranges():
            self._fail_unless(ok, name, allowed)

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        return iter(())

    @classmethod
    def key(cls, name: str) -> str:
        """The dotted params.yaml key of field `name` (`lam` -> `loss.lambda`)."""
        name = _RENAMES_BACK.get(name, name)
        return f"{cls.KEY}.{name}" if cls.KEY else name

    def _fail_unless(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ParamsError(f"params: '{self.key(name)}' is {getattr(self, name)!r}; allowed: {allowed}")


@dataclass(frozen=True)
class PathsParams(Section):
    """Every file and folder the stages read or write, declared once (dvc.yaml uses `${paths.*}`)."""

    KEY: ClassVar[str] = "paths"
    labeled: Path
    """NYUDv2's labeled .mat (or the synthetic one in its exact layout)."""
    splits: Path
    """Eigen's splits.mat: 1-based train/test indices."""
    processed_dir: Path
    """train/val/test.h5 and summary.json, replaced as a whole."""
    model: Path
    """The best epoch's checkpoint: all evaluate, predict and the report need."""
    resume_checkpoint: Path
    """Model, optimiser, scheduler and RNG state after every epoch (not a DVC output: resume only)."""
    run_id: Path
    """The MLflow run id train writes and evaluate and report reopen."""
    train_log: Path
    train_metrics: Path
    """The last epoch's alignment-term loss, `{"train": {"align_loss": x}}` (`{}` with the term off)."""
    metrics: Path
    per_image: Path
    per_scene_type: Path
    error_by_depth: Path
    predictions: Path
    report_md: Path
    report_html: Path
    figures_dir: Path
    sequences: Path
    """RGB-D sequences in TUM RGB-D's layout, one sub-folder per sequence, whatever `sequences.source`."""
    align_data: Path
    """The alignment term's training sequences (stage align_data; TUM layout), or a note when loss.align is off."""
    pose_reference: Path
    """pose_reference's scores of the methods that never read the model (table.json, pairs.csv, trajectories/)."""
    pose_table: Path
    """Every method's full scores (RPE per gap, success, ATE): what the report and the docs read."""
    pose_metrics: Path
    """The headline figures per method (success at gaps 1 and 4, ATE): the DVC metrics file."""
    pose_pairs: Path
    """One row per scored pair and method: errors, convergence, residual."""
    pose_trajectories: Path
    """The chained gap-1 trajectories per sequence and method, TUM format, beside the ground truth."""

    def resolve(self, root: str | Path) -> PathsParams:
        """Every path under `root` (the folder the stage runs in, normally the repository root)."""
        root = Path(root)
        return dataclasses.replace(self, **{f.name: root / getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class SyntheticParams(Section):
    """The built-in synthetic NYUDv2 (`data.source: synthetic`)."""

    KEY: ClassVar[str] = "data.synthetic"
    n_images: int
    """Frames to render; 1449 would match NYUDv2's size (the demo renders 160 in under a minute)."""
    seed: int
    """Scenes, cameras and the train/test split are a pure function of it."""
    test_fraction: float
    """Share of *scenes* in the test split; NYUDv2's 795/654 is 45%."""
    height: int
    """Rendered frame height: NYU's 480 by default; lower (with width) renders the Kinect's view with fewer rays."""
    width: int
    """Rendered frame width: NYU's 640 by default (the demo renders at its training size, 128x160)."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "n_images", self.n_images >= 4, "an integer >= 4"
        yield "test_fraction", 0 < self.test_fraction < 1, "a number in (0, 1)"
        yield "height", 16 <= self.height <= 1920, "an integer in 16..1920 (pixels)"
        yield "width", 16 <= self.width <= 2560, "an integer in 16..2560 (pixels)"


def _is_sha256(v: str) -> bool:
    return len(v) == 64 and all(c in "0123456789abcdef" for c in v.lower())


def _mirrors(v: str | list[str]) -> tuple[str, ...]:
    return (v,) if isinstance(v, str) else tuple(v)


@dataclass(frozen=True)
class FolderParams(Section):
    """Paired RGB and depth image files named by list files (`data.source: folder`; README: Larger training sets)."""

    KEY: ClassVar[str] = "data.folder"
    root: Path
    """The folder the lists' paths are relative to (a leading '/' in a list is relative to it too, as in BTS's)."""
    train_list: Path
    """One pair a line, `<rgb> <depth> [focal]` (whitespace) or `rgb,depth` (CSV); val is carved from it by room."""
    test_list: str
    """The test pairs' list (same format), read when test_from is `list`; '' otherwise."""
    test_from: TestFrom
    """list: the test split is test_list's pairs, at their own resolution; labeled: the official 654 frames of
    the labeled .mat (downloaded as `data.source: nyudv2` does), so results compare with published ones."""
    depth_scale: float
    """Depth PNG value / depth_scale = metres: 1000 for 16-bit millimetres (BTS), 25.5 for DenseDepth's 8-bit
    training PNGs (its loader reads them as value / 255 * 10 m). A value >= 256 requires 16-bit PNGs."""
    url: str | list[str]
    """An archive (zip or tar) of the files, or mirrors of it, fetched like data.url and unpacked into
    unpack_dir; '' = the files are already under root."""
    sha256: str
    """The archive's SHA-256; '' skips verification and logs the observed hash."""
    unpack_dir: Path
    """Where the archive is unpacked, atomically; root must be it or a folder inside it (BTS trains from the
    `sync/` folder its sync.zip unpacks to, so root is `<unpack_dir>/sync`)."""

    @property
    def urls(self) -> tuple[str, ...]:
        """`url` as a tuple of mirrors; empty when there is no archive."""
        return () if self.url == "" else _mirrors(self.url)

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        ok_url = isinstance(self.url, str) or (len(self.url) > 0 and all(u.strip() for u in self.url))
        yield "url", ok_url, "'' (no archive), a URL or path, or a non-empty list of them"
        yield "sha256", self.sha256 == "" or _is_sha256(self.sha256), "64 hex digits, or '' to skip verification"
        yield "depth_scale", self.depth_scale > 0 and math.isfinite(self.depth_scale), "a number > 0"
        needed = self.test_from == "list"
        yield "test_list", bool(self.test_list.strip()) or not needed, "a list file (data.folder.test_from is list)"
        inside = not self.urls or Path(os.path.abspath(self.root)).is_relative_to(os.path.abspath(self.unpack_dir))
        yield "root", inside, f"data.folder.unpack_dir ({self.unpack_dir}) or a folder inside it (an archive is set)"


@dataclass(frozen=True)
class DataParams(Section):
    """Where the raw data comes from (the download stage)."""

    KEY: ClassVar[str] = "data"
    source: Source
    """`nyudv2` downloads the labeled set; `synthetic` renders rooms offline in the same layout; `folder`
    reads paired RGB and depth files named by list files (`data.folder`)."""
    url: str | list[str]
    """The labeled .mat: one location or a list of mirrors tried in order, each http(s)://, file://
    or a local path (hard-linked, never downloaded again); every one is checked against size and sha256."""
    splits_url: str | list[str]
    size: int
    """Expected bytes of the labeled file; 0 = don't check."""
    sha256: str
    """The labeled file's SHA-256; '' skips verification and logs the observed hash."""
    splits_sha256: str
    retries: int
    """Transient failures (connection, 5xx, truncation) retried with exponential backoff; never a 404."""
    synthetic: SyntheticParams
    folder: FolderParams

    @property
    def urls(self) -> tuple[str, ...]:
        """`url` as a tuple of mirrors, in the order they are tried."""
        return _mirrors(self.url)

    @property
    def splits_urls(self) -> tuple[str, ...]:
        """`splits_url` as a tuple of mirrors, in the order they are tried."""
        return _mirrors(self.splits_url)

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        for name in ("url", "splits_url"):
            v = getattr(self, name)
            yield name, isinstance(v, str) or (len(v) > 0 and all(u.strip() for u in v)), "a non-empty list of URLs"
        for name in ("sha256", "splits_sha256"):
            v = getattr(self, name)
            yield name, v == "" or _is_sha256(v), "64 hex digits, or '' to skip verification"
        yield "size", self.size >= 0, "bytes >= 0 (0 = don't check)"
        yield "retries", self.retries >= 0, "an integer >= 0"


# TUM RGB-D's sequence names as its download page spells them, e.g. freiburg1_desk.
_TUM_NAME = re.compile(r"freiburg[123]_[a-z0-9_]+")


@dataclass(frozen=True)
class SyntheticSequencesParams(Section):
    """Rendered hand-held sequences with exact poses (`sequences.source: synthetic`; docs/sequences.md)."""

    KEY: ClassVar[str] = "sequences.synthetic"
    n: int
    """How many sequences, each in a room of its own (never a room of the depth data)."""
    frames: int
    """RGB frames per sequence (at `fps`: 120 frames = 4 s of walking, as TUM's shorter fr1 clips)."""
    fps: float
    """RGB frame rate in Hz: the Kinect's 30, so frame-to-frame motion is TUM's; depth and ground truth run
    on their own clocks (depth offset by a few ms, ground truth at 100 Hz) so association is exercised."""
    height: int
    """Frame height; 480x640 is TUM's and NYU's (the demo and tests render 128x160 or smaller: far fewer rays)."""
    width: int
    seed: int
    """Rooms, trajectories and sensor noise are a pure function of it (a seed stream apart from data.synthetic's)."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "n", 1 <= self.n <= 1000, "an integer in 1..1000"
        yield "frames", 2 <= self.frames <= 10000, "an integer in 2..10000 (motion needs two frames)"
        yield "fps", 1 <= self.fps <= 120, "Hz in 1..120"
        yield "height", 16 <= self.height <= 1920, "an integer in 16..1920 (pixels)"
        yield "width", 16 <= self.width <= 2560, "an integer in 16..2560 (pixels)"


@dataclass(frozen=True)
class TumParams(Section):
    """TUM RGB-D benchmark sequences (`sequences.source: tum`; docs/sequences.md for sizes and choices)."""

    KEY: ClassVar[str] = "sequences.tum"
    names: list[str]
    """Sequences as TUM's download page names them (freiburg1_desk, freiburg3_long_office_household, ...);
    freiburg1/2/3 also picks the intrinsics TUM publishes for that Kinect."""
    mirrors: list[str]
    """Base URLs tried in order: `<mirror>/freiburg1/rgbd_dataset_freiburg1_desk.tgz` (http(s), file:// or a
    local folder holding the archives)."""
    sha256: list[str]
    """One per name ('' = unpinned): TUM publishes no checksums, so the first download logs the archive's
    SHA-256, to paste here to pin it."""
    download_dir: Path
    """Where archives are unpacked (one folder each, kept between runs; not a DVC output): the stage links
    their files into paths.sequences, so a re-run never downloads again."""
    retries: int
    """Transient failures retried per mirror with exponential backoff (as data.retries)."""

    def urls(self, name: str) -> tuple[str, ...]:
        """The mirrors' URLs of sequence `name`'s archive, in the order to try them."""
        kinect = name.split("_")[0]
        return tuple(f"{m.rstrip('/')}/{kinect}/rgbd_dataset_{name}.tgz" for m in self.mirrors)

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        ok_names = len(self.names) > 0 and all(_TUM_NAME.fullmatch(n) for n in self.names)
        yield "names", ok_names, "a non-empty list of TUM names such as freiburg1_desk"
        yield "names", len(set(self.names)) == len(self.names), "each name once"
        yield "mirrors", len(self.mirrors) > 0 and all(m.strip() for m in self.mirrors), "a non-empty list of URLs"
        ok_sha = len(self.sha256) == len(self.names) and all(v == "" or _is_sha256(v) for v in self.sha256)
        yield "sha256", ok_sha, "one entry per name: 64 hex digits, or '' (unpinned)"
        yield "retries", self.retries >= 0, "an integer >= 0"


@dataclass(frozen=True)
class SequencesParams(Section):
    """RGB-D sequences with ground-truth camera motion, in TUM RGB-D's layout (the `sequences` stage)."""

    KEY: ClassVar[str] = "sequences"
    enabled: bool
    """false: no sequences (nothing downloaded or rendered); paths.sequences then holds only a note."""
    source: SequenceSource
    """synthetic: rendered rooms of their own with exact poses; tum: TUM RGB-D's sequences (`sequences.tum`);
    folder: TUM-layout sequence folders already on disk under `folder_root`."""
    tolerance_s: float
    """Association window in seconds: an RGB frame takes the nearest depth frame within it, and its pose from
    ground truth within it (TUM's associate.py max_difference, 0.02 s)."""
    folder_root: Path
    """source folder: the folder holding TUM-layout sequence folders (each gets linked into paths.sequences)."""
    synthetic: SyntheticSequencesParams
    tum: TumParams

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "tolerance_s", 0 < self.tolerance_s <= 1, "seconds in (0, 1] (TUM's tools use 0.02)"


PoseFeatures = Literal["encoder", "rgb"]
PoseDepth = Literal["predicted", "sensor"]


def _subset(values: list[str], literal: Any) -> tuple[bool, str]:
    """Whether `values` is a non-empty list of distinct choices of `literal`, and what is allowed."""
    allowed = choices(literal)
    ok = len(values) > 0 and len(set(values)) == len(values) and all(v in allowed for v in values)
    return ok, f"a non-empty list of distinct values from {' | '.join(allowed)}"


@dataclass(frozen=True)
class PoseParams(Section):
    """Camera motion from the depth network's features by direct alignment (the `pose` stage; docs/pose.md)."""

    KEY: ClassVar[str] = "pose"
    features: list[str]
    """What is aligned, one variant each: encoder (the depth network's encoder pyramid) | rgb (image
    intensities: classical photometric alignment, the reference the features must beat)."""
    depth: list[str]
    """The target depth the pixels are back-projected with, crossed with `features`: predicted (the network's,
    metric) | sensor (the sequence's depth images: what predicted depth costs is the difference)."""
    control: bool
    """Also align the same encoder at its initial, untrained weights (sensor depth): isolates what training
    gave the features from what the architecture alone does."""
    gaps: list[int]
    """Frame gaps of the scored pairs (target i, source i + gap): RPE and success rate per gap measure the
    basin (every pair starts from the identity). Gap 1 also gives the chained trajectory and its ATE."""
    max_frames: int
    """Frames of each sequence used, from its start; 0 = all (TUM's fr1/desk: 573)."""
    iterations: int
    """Cap on Levenberg-Marquardt iterations per pyramid level (LKVOLearner's 20)."""
    depth_weight: float
    """Weight of the geometric term (the source frame's depth against the warped points', each term in units of
    its own robust scale; DVO-SLAM's and Open3D's hybrid cost) beside the photometric one; 0 = photometric only.
    Applies to the variants with sensor depth (the network's predictions of two frames agree too little to help)."""
    batch_size: int
    """Pairs aligned at once (and frames per depth prediction)."""
    success_trans_m: float
    """A pair succeeds when it converged with translation error within this (metres) ..."""
    success_rot_deg: float
    """... and rotation error within this (degrees)."""
    seed: int
    """Initial weights of the untrained-encoder control (torch's default initialisation under this seed)."""
    device: DeviceName
    """auto | cuda | mps | cpu: where features are extracted and pairs aligned (Open3D runs on the CPU)."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "features", *_subset(self.features, PoseFeatures)
        yield "depth", *_subset(self.depth, PoseDepth)
        ok_gaps = len(self.gaps) > 0 and len(set(self.gaps)) == len(self.gaps) and all(g >= 1 for g in self.gaps)
        yield "gaps", ok_gaps, "a non-empty list of distinct frame gaps >= 1"
        yield "max_frames", self.max_frames == 0 or self.max_frames >= 2, "0 (all) or an integer >= 2"
        yield "iterations", 1 <= self.iterations <= 1000, "an integer in 1..1000"
        yield "depth_weight", 0 <= self.depth_weight <= 100, "a weight in [0, 100] (0: photometric only)"
        yield "batch_size", self.batch_size >= 1, "an integer >= 1"
        yield "success_trans_m", self.success_trans_m > 0, "metres > 0"
        yield "success_rot_deg", 0 < self.success_rot_deg <= 180, "degrees in (0, 180]"


@dataclass(frozen=True)
class PreprocessParams(Section):
    """The processed splits: training resolution and the validation carve-out."""

    KEY: ClassVar[str] = "preprocess"
    height: int
    """Training resolution; NYU's 480x640 halved, as most work does. The test split stays 480x640."""
    width: int
    val_fraction: float
    """Share of the training *rooms* held out for validation (sibling recordings stay together)."""
    seed: int

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        # NYU frames are 480x640; training above that would only upsample.
        yield "height", 16 <= self.height <= 480, "an integer in 16..480"
        yield "width", 16 <= self.width <= 640, "an integer in 16..640"
        yield "val_fraction", 0 <= self.val_fraction < 1, "a number in [0, 1)"


UNET_ENCODER = "unet"
# A timm model name, optionally with a weight tag (`resnet50.tv_in1k`); no `hf-hub:` ids, whose
# weights timm would always fetch from the hub.
_TIMM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class ModelParams(Section):
    """The U-Net's architecture; stored in every checkpoint, which rebuilds the net from it."""

    KEY: ClassVar[str] = "model"
    encoder: str
    """`unet`: the plain U-Net's own encoder, trained from scratch (the default); or a timm backbone
    with `features_only` support (resnet18/34/50, efficientnet_b0, convnext_tiny checked; a weight tag
    such as `resnet50.tv_in1k` picks timm's copy of other weights) under the same U-Net decoder."""
    pretrained: bool
    """Start a backbone from ImageNet weights: from the Hugging Face hub through timm, or from
    `weights` when set. Only for a backbone: the plain U-Net has no pretrained weights."""
    weights: Path | None
    """A local timm/torchvision state dict of the backbone (for machines without network access),
    absolute or relative to the repository root; null = fetch through timm. Needs `pretrained: true`."""
    base_channels: int
    """Channels at full resolution, doubled at every level; with a backbone, the decoder's width at
    1/r of the input is base_channels * r, as in the plain U-Net."""
    depth: int
    """Down/up levels; height and width must be divisible by 2**depth (240x320 -> 15x20 at depth 4).
    The plain U-Net only: a backbone brings its own levels."""
    norm: Norm
    activation: Activation
    dropout: float
    """Channel-wise dropout at the bottleneck only: regularises without blurring the skips."""
    max_depth: float
    """Metres; the head predicts max_depth * sigmoid(z), so depth is never 0 nor beyond the sensor."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        backbone = self.encoder != UNET_ENCODER
        yield "encoder", bool(_TIMM_NAME.fullmatch(self.encoder)), "unet or a timm model name (e.g. resnet34)"
        yield "pretrained", backbone or not self.pretrained, "false for encoder unet (pick a backbone, e.g. resnet34)"
        yield "weights", self.weights is None or self.pretrained, "null unless model.pretrained is true"
        yield "base_channels", 1 <= self.base_channels <= 512, "an integer in 1..512"
        yield "depth", 1 <= self.depth <= 7, "an integer in 1..7"
        yield "dropout", 0 <= self.dropout < 1, "a number in [0, 1)"
        yield "max_depth", self.max_depth > 0, "metres > 0"


@dataclass(frozen=True)
class AlignLossParams(Section):
    """The alignment term (`loss.align`): the encoder's features trained through the pose solver (docs/pose.md)."""

    KEY: ClassVar[str] = "loss.align"
    weight: float
    """Total loss = depth loss + weight x align loss; 0 = off: today's training exactly, and the
    align_data stage renders nothing."""
    pairs_per_step: int
    """Frame pairs aligned (unrolled, with gradients) per optimiser step and process."""
    iterations: int
    """Unrolled Gauss-Newton iterations per pyramid level (PixLoc trains with a few; the solver runs up to 20)."""
    perturb_rot_deg: float
    """The unrolled solve starts from the true motion composed with a rotation of up to this angle..."""
    perturb_trans_m: float
    """...and a translation of up to this length (random axis and direction, uniform magnitude)."""
    gaps: list[int]
    """Frame gaps of the training pairs, at 30 Hz (the pose stage scores 1, 2, 4, 8)."""
    error: AlignError
    """What the loss charges after each level: reprojection (PixLoc's: the target's points projected under the
    estimate against the truth, normalised image units; blind to motion along the view) or points (their 3-D
    distance, metres: every direction of translation counts, as the 1 cm success threshold does)."""
    sequences: int
    """Rendered training sequences, each in a room of its own (never an evaluation or depth-data room)."""
    frames: int
    """RGB frames per training sequence, rendered at the training resolution (preprocess.height/width)."""
    seed: int
    """Rooms, walks and the pairs drawn: a pure function of it."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "weight", 0 <= self.weight <= 1000 and math.isfinite(self.weight), "a number in [0, 1000] (0 = off)"
        yield "pairs_per_step", 1 <= self.pairs_per_step <= 256, "an integer in 1..256"
        yield "iterations", 1 <= self.iterations <= 20, "an integer in 1..20"
        yield "perturb_rot_deg", 0 <= self.perturb_rot_deg <= 45, "degrees in [0, 45]"
        yield "perturb_trans_m", 0 <= self.perturb_trans_m <= 1, "metres in [0, 1]"
        yield "sequences", 1 <= self.sequences <= 1000, "an integer in 1..1000"
        yield "frames", 2 <= self.frames <= 10000, "an integer in 2..10000 (a pair needs two frames)"
        ok_gaps = len(self.gaps) > 0 and all(1 <= g < self.frames for g in self.gaps)
        yield "gaps", ok_gaps, "a non-empty list of integers in 1..frames-1 (loss.align.frames)"


ALIGN_OFF = AlignLossParams(
    weight=0.0, pairs_per_step=4, iterations=3, perturb_rot_deg=5.0, perturb_trans_m=0.05, gaps=[1],
    error="reprojection", sequences=1, frames=2, seed=0,
)  # fmt: skip
"""The term switched off: `LossParams`' default when built in code (params.yaml must still name every key)."""


@dataclass(frozen=True)
class LossParams(Section):
    """The training loss."""

    KEY: ClassVar[str] = "loss"
    name: LossName
    """eigen: Eigen's scale-invariant log loss; l2: L2 on log depth; l2_smooth: l2 + edge-aware smoothness."""
    lam: float
    """Eigen's lambda (`loss.lambda`): 0 = L2 on log depth, 1 = fully scale-invariant, 0.5 the design's choice."""
    smoothness: float
    """Weight of the edge-aware smoothness term (l2_smooth only)."""
    align: AlignLossParams = ALIGN_OFF
    """The alignment term on the encoder's features (`loss.align.*`); weight 0 = off."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "lam", 0 <= self.lam <= 1, "a number in [0, 1] (0 = L2 on log depth, 1 = fully scale-invariant)"
        yield "smoothness", self.smoothness >= 0, "a number >= 0"


@dataclass(frozen=True)
class TrainParams(Section):
    """Optimisation, device and model selection."""

    KEY: ClassVar[str] = "train"
    epochs: int
    batch_size: int
    """Per process; under torchrun the global batch is batch_size x world size (lr is not rescaled)."""
    lr: float
    """Peak learning rate, reached after the warm-up."""
    encoder_lr_mult: float
    """A pretrained backbone trains at lr * encoder_lr_mult (the decoder and head at lr): 0.1, as
    AdaBins does, so the first steps of a random decoder do not wash out the ImageNet features.
    Ignored for the plain U-Net and for a randomly initialised backbone (model.pretrained: false)."""
    optimizer: OptimizerName
    schedule: Schedule
    """cosine decays to 0 after the warm-up; constant keeps the peak."""
    warmup_epochs: int
    weight_decay: float
    """AdamW's decoupled decay (lr * wd per step) or SGD's L2."""
    amp: AmpMode
    """auto: bf16 autocast on CUDA, float32 elsewhere; bf16: bf16 autocast on any device (the
    CPU included, so CI runs the mixed-precision path); off: float32. Metrics are always float32."""
    compile: bool
    """torch.compile the model (inductor; on the CPU with the machine's C compiler); the first epoch is slow."""
    device: DeviceName
    """auto picks CUDA, then MPS, then the CPU."""
    seed: int
    val_every: int
    """Validate every N epochs (and always after the last)."""
    deterministic: bool
    """CUDA's deterministic algorithms (slower); the CPU always is."""
    best_metric: BestMetric
    """models/model.pt is the epoch best on this validation metric."""
    augment: bool
    """Flips, colour jitter and scale-and-crop, on the device."""
    data: TrainData
    """device: train/val copied to the device once; stream: batches read from the HDF5 files by a
    DataLoader while training (bit-identical results); auto: device when they fit in half the free memory."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "epochs", self.epochs >= 1, "an integer >= 1"
        yield "batch_size", self.batch_size >= 1, "an integer >= 1"
        yield "lr", 0 < self.lr < 10, "a number in (0, 10)"
        yield "encoder_lr_mult", 0 < self.encoder_lr_mult <= 1, "a number in (0, 1]"
        yield "warmup_epochs", self.warmup_epochs >= 0, "an integer >= 0"
        yield "weight_decay", self.weight_decay >= 0, "a number >= 0"
        yield "val_every", self.val_every >= 1, "an integer >= 1"


@dataclass(frozen=True)
class EvalParams(Section):
    """The evaluation protocol (also the region validation scores during training)."""

    KEY: ClassVar[str] = "eval"
    gt: GroundTruth
    """raw: the Kinect depth (BTS, AdaBins and later work); filled: the in-painted depths (Eigen 2014, FCRN)."""
    crop: Crop
    """eigen: rows 45:471, cols 41:601 of 480x640 (BTS, AdaBins); none: the whole frame."""
    flip_tta: bool
    """Average with the prediction of the mirrored image (DenseDepth, AdaBins)."""
    min_depth: float
    """Metres; ground truth outside (min_depth, max_depth) is not scored, predictions are clipped to it."""
    max_depth: float
    batch_size: int
    n_examples: int
    """Fixed, evenly spaced test images kept for the report's qualitative grid."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "min_depth", self.min_depth > 0 and math.isfinite(self.min_depth), "metres > 0"
        yield "max_depth", self.max_depth > self.min_depth, f"metres > eval.min_depth ({self.min_depth})"
        yield "batch_size", self.batch_size >= 1, "an integer >= 1"
        yield "n_examples", self.n_examples >= 0, "an integer >= 0"


@dataclass(frozen=True)
class MlflowParams(Section):
    """Tracking; the store itself comes from MLFLOW_TRACKING_URI (default: sqlite in the repo)."""

    KEY: ClassVar[str] = "mlflow"
    enabled: bool
    """false: no MLflow at all. An unreachable store only warns, never fails a stage."""
    experiment: str
    """Created as a custom-model experiment (tag `mlflow.experimentKind`), so the UI opens its runs table."""
    registered_model: str
    """The Model Registry name the best model is registered under as a new version; '' = log it, don't register."""
    system_metrics: bool
    """Log CPU, memory, disk and network (and GPU with nvidia-ml-py) during training as `system/*` metrics."""
    system_metrics_interval: float
    """Seconds between system-metric samples (MLflow's default is 10)."""
    val_images: int
    """Validation images drawn each validated epoch as RGB | ground truth | prediction | error; 0 = none."""
    lock_wait_s: float
    """Seconds a stage waits for a sqlite store another writer holds locked before tracking goes off (a warning)."""

    def _ranges(self) -> Iterator[tuple[str, bool, str]]:
        yield "experiment", bool(self.experiment.strip()), "a non-empty name"
        yield "lock_wait_s", 0 < self.lock_wait_s <= 600, "seconds in (0, 600]"
        name = self.registered_model
        ok_name = name == "" or (name.strip() == name and not any(c in name for c in "/\\:%"))
        yield "registered_model", ok_name, "a name without / \\ : % or surrounding spaces, or '' to not register"
        yield "system_metrics_interval", 1 <= self.system_metrics_interval <= 3600, "seconds in 1..3600"
        yield "val_images", 0 <= self.val_images <= 16, "an integer in 0..16"


@dataclass(frozen=True)
class Params(Section):
    """All of `params.yaml`, typed."""

    KEY: ClassVar[str] = ""
    paths: PathsParams
    data: DataParams
    preprocess: PreprocessParams
    model: ModelParams
    loss: LossParams
    train: TrainParams
    eval: EvalParams
    mlflow: MlflowParams
    sequences: SequencesParams
    pose: PoseParams

    def to_flat_dict(self) -> dict[str, Any]:
        """Every param flattened with dotted keys as written in params.yaml (`loss.lambda`)."""
        return flatten(to_yaml_dict(self))


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """A section from its YAML mapping: unknown and missing keys here, values in `__post_init__`."""
    if not isinstance(raw, dict):
        what = f"'{prefix}'" if prefix else "the file"
        raise ParamsError(f"params: {what} must hold a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    dotted = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: key)
    kwargs = {}
    for key, value in raw.items():
        name = _RENAMES.get(key, key)
        if name not in fields:
            allowed = ", ".join(_RENAMES_BACK.get(n, n) for n in fields)
            kind = "key" if prefix else "section"
            raise ParamsError(f"params: unknown {kind} '{dotted(key)}'; allowed {kind}s: {allowed}")
        tp = hints[name]
        kwargs[name] = _build(typing.cast(type, tp), value, dotted(key)) if dataclasses.is_dataclass(tp) else value
    for name in fields:
        if name not in kwargs:
            kind = "key" if prefix else "section"
            key = dotted(_RENAMES_BACK.get(name, name))
            raise ParamsError(f"params: missing {kind} '{key}'; add it (see the repository's params.yaml)")
    return cls(**kwargs)


def section_from_dict(cls: type[Section], raw: Any) -> Any:
    """One section (e.g. `ModelParams` from a checkpoint's `model_config`), checked like params.yaml.

    Raises:
        ParamsError: on a missing, unknown, mistyped or out-of-range key.
    """
    return _build(cls, raw, cls.KEY)


def params_from_dict(raw: Any) -> Params:
    """Builds and validates `Params` from the parsed YAML mapping.

    Raises:
        ParamsError: on a missing, unknown, mistyped or out-of-range key.
    """
    return _build(Params, raw, "")


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
    """A params dataclass as the nested dict params.yaml would hold (`lam` back to `lambda`, paths as str)."""
    if dataclasses.is_dataclass(obj):
        return {_RENAMES_BACK.get(f.name, f.name): to_yaml_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return str(obj) if isinstance(obj, Path) else obj


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
