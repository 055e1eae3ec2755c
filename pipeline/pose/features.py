"""Feature pyramids to align: the depth network's encoder features, or image intensities.

A `Pyramid` holds one (B, C, h, w) map per stride s, and where each map's pixels sit:
pixel k of a stride-s map is centred on input pixel s k + o (`offsets`). Pooling (the
U-Net's max-pool, the intensities' average pooling) covers [k s, (k + 1) s), so
o = (s - 1) / 2; timm's strided convolutions (odd kernels padded (k - 1) / 2) centre
pixel k on s k, o = 0. `level_offsets` measures o from the network's own layers, and
`pipeline.pose.warp.level_intrinsics` turns it into each level's intrinsics.

Normalisation (why): a learned feature's magnitude varies with the activation, not with
the match, so each pixel's encoder feature is L2-normalised over channels (as PixLoc and
GN-Net do). Post-ReLU maps also share a large positive offset that makes every pixel's
direction alike; it is removed per *pair* in `project_pair` (the mean of both frames),
never per image: centring each image on its own mean gives the same 3-D point different
features in the two frames whenever their views differ. `project_pair` also projects a
level's C channels onto the pair's leading principal components (PixLoc aligns 32-128
channels; the coarse U-Net levels carry 128-512) and renormalises, so a residual's norm
is in [0, 2] at every level. A tracker that aligns many frames to one keyframe fits the
`Projection` on the keyframe alone, once, and applies that same map to every frame it
serves (`solver.prepare_target`): one map for both frames of a pair, as the pair's own.
Intensities are one channel, the luminance (ITU-R BT.601 weights, as DVO and most
direct odometry align grey images), standardised per image (zero mean, unit standard
deviation): for them per-image statistics are the point, they cancel a global exposure
change between the two frames. One channel, not three: RGB's channels largely move
together, and three cost three times the sampling and products for the same success
(fr1/rpy dev frames 300-449, 240x320, gaps 1/2/4/8: 51/42/20/3 % with three channels,
50/42/20/3 % with one; on all 394 dev frames the tracker's ATE was 17.8 mm against 21.4).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from pipeline.config import ModelParams
from pipeline.device import native_bf16
from pipeline.model.build import DepthNet, build_model
from pipeline.pose.serial import one_thread

FeatureKind = Literal["encoder", "rgb"]
FEATURE_KINDS: tuple[str, ...] = ("encoder", "rgb")
RGB_STRIDES = (1, 2, 4, 8, 16)  # what average pooling of the image offers
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights of R, G, B
EPS = 1e-6  # guards the normalisations against an all-zero pixel or a flat image


@dataclass(frozen=True)
class Pyramid:
    """Feature maps of a batch of frames, coarsest last.

    Attributes:
        levels: (B, C_l, h_l, w_l) float32 maps, one per stride, in `strides` order.
        strides: input pixels per feature pixel of each map, increasing.
        image_hw: (H, W) of the frames they were computed from.
        kind: `encoder` or `rgb`.
    """

    levels: tuple[torch.Tensor, ...]
    strides: tuple[int, ...]
    image_hw: tuple[int, int]
    kind: str
    offsets: tuple[float, ...] = ()
    """Input pixel of each map's pixel-0 centre; empty: (s - 1) / 2 each (pooled maps)."""

    def __post_init__(self) -> None:
        """Fills `offsets` and checks it has one entry per level."""
        if not self.offsets:
            object.__setattr__(self, "offsets", tuple((s - 1) / 2 for s in self.strides))
        if len(self.offsets) != len(self.strides) or len(self.levels) != len(self.strides):
            raise ValueError(
                f"Pyramid: {len(self.levels)} maps, {len(self.strides)} strides, {len(self.offsets)} offsets"
            )

    def take(self, index: slice | torch.Tensor | list[int]) -> Pyramid:
        """The frames `index` picks (a slice, or indices) as a pyramid: e.g. targets `[:-1]`, sources `[1:]`."""
        return Pyramid(tuple(f[index] for f in self.levels), self.strides, self.image_hw, self.kind, self.offsets)

    @staticmethod
    def cat(pyramids: list[Pyramid]) -> Pyramid:
        """The frames of several pyramids of one kind, strides and size, in order (e.g. chunks of a sequence)."""
        first = pyramids[0]
        if any((p.strides, p.image_hw, p.kind) != (first.strides, first.image_hw, first.kind) for p in pyramids):
            raise ValueError("pyramids differ in kind, strides or frame size")
        if any(p.offsets != first.offsets for p in pyramids):
            raise ValueError("pyramids differ in their pixel grids (offsets)")
        levels = tuple(torch.cat(maps) for maps in zip(*(p.levels for p in pyramids), strict=True))
        return Pyramid(levels, first.strides, first.image_hw, first.kind, first.offsets)


def model_strides(model: DepthNet) -> tuple[int, ...]:
    """The stride of each map `model.encode` returns: 2^k for the U-Net, the backbone's reductions otherwise."""
    reductions = getattr(model, "reductions", None)
    if reductions is not None:
        return tuple(int(r) for r in reductions)
    return tuple(2**k for k in range(model.cfg.depth + 1))


_OFFSETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def level_offsets(model: DepthNet) -> tuple[float, ...]:
    """Per `encode` map, the input pixel its pixel 0 is centred on, traced through the network's own layers.

    Each strided conv or pool (kernel k, stride s, padding p, dilation d) centres its
    output pixel j on input s j + (d (k - 1) / 2 - p); composed along the maps' resolutions
    from the input's. One small forward pass per model, cached (weights do not matter).
    """
    if model in _OFFSETS:
        return _OFFSETS[model]
    strides = model_strides(model)
    size = 4 * max(strides)  # divisible by every stride
    grid: dict[int, tuple[int, float]] = {size: (1, 0.0)}  # map height -> (stride, offset)

    def hook(mod: torch.nn.Module, inp: tuple, out: torch.Tensor) -> None:
        r, o = grid.get(int(inp[0].shape[-2]), (1, 0.0))
        k, s, p, d = (_first(getattr(mod, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
        if s > 1:
            grid.setdefault(int(out.shape[-2]), (r * s, o + r * (d * (k - 1) / 2 - p)))

    kinds = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            maps = model.encode(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    out = tuple(grid.get(int(f.shape[-2]), (s, (s - 1) / 2))[1] for f, s in zip(maps, strides, strict=True))
    _OFFSETS[model] = out
    return out


def _first(x: int | tuple | str) -> int:
    """A layer's kernel, stride, padding or dilation along the height (timm's 'same' padding counts as centred)."""
    if isinstance(x, str):
        return 0
    return int(x[0]) if isinstance(x, tuple) else int(x)


def _pick(maps: list[torch.Tensor], have: tuple[int, ...], want: tuple[int, ...]) -> tuple[tuple, tuple]:
    """The maps at the wanted strides that exist (at least one must)."""
    keep = [i for i, s in enumerate(have) if s in want]
    if not keep:
        raise ValueError(f"none of the strides {want} is available; this pyramid has {have}")
    return tuple(maps[i] for i in keep), tuple(have[i] for i in keep)


def _encoder_pyramid(model: DepthNet, feats: list[torch.Tensor], want: tuple[int, ...], hw: tuple[int, int]) -> Pyramid:
    """The encoder's maps at the wanted strides, L2-normalised per pixel (centring waits for the pair)."""
    # bf16 channels-last maps (`_encode`): permuted in bf16 first, half the bytes (2x faster than after .float()).
    maps = [f.contiguous().float() for f in feats]  # finest first
    maps = [_unit(f) for f in maps]  # (B, C_l, h_l, w_l) unit vectors
    strides = model_strides(model)
    offsets = dict(zip(strides, level_offsets(model), strict=True))
    levels, kept = _pick(maps, strides, want)
    return Pyramid(levels=levels, strides=kept, image_hw=hw, kind="encoder", offsets=tuple(offsets[s] for s in kept))


PCA_PIXELS = 4096  # pixels per frame the pair's covariance is estimated from (a strided subset beyond)


@dataclass(frozen=True)
class Projection:
    """One level's shared centring and channel projection, applied alike to every frame it serves.

    Attributes:
        mean: (B, C, 1, 1) the pixels' mean feature.
        axes: (B, c, C) the leading principal axes, or None (C <= the channels wanted: centre only).
    """

    mean: torch.Tensor
    axes: torch.Tensor | None

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, c, h, w): centred, projected, unit vectors per pixel."""
        centred = f - self.mean
        if self.axes is None:
            return _unit(centred)
        B, _, h, w = f.shape
        return _unit((self.axes @ centred.flatten(2)).reshape(B, self.axes.shape[1], h, w))


def fit_projection(maps: list[torch.Tensor], channels: int) -> Projection:
    """The `Projection` fitted on the pixels of `maps` together (each (B, C, h, w)): their mean, their leading axes.

    The axes are a constant to autograd (the alignment term trains through this function,
    `pipeline.pose.unroll`): subspace iteration's QR gradients blow up where eigenvalues
    cross. The solver runs without gradients, so this changes none of its numbers.
    """
    B, C, h, w = maps[0].shape
    step = max(1, (h * w) // PCA_PIXELS)
    sub = torch.cat([f.flatten(2)[..., ::step] for f in maps], dim=2)  # (B, C, m)
    mean = sub.mean(dim=2, keepdim=True)[..., None]  # (B, C, 1, 1)
    if channels >= C:
        return Projection(mean, None)
    x = (sub - mean[..., 0]).detach()
    return Projection(mean, _leading_axes(x @ x.transpose(1, 2), channels).transpose(1, 2))  # (B, c, C)


def project_pair(f_tgt: torch.Tensor, f_src: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres two (B, C, h, w) encoder maps on their pair's mean, keeps `channels` principal components, renormalises.

    The mean and the principal axes are the pair's (both frames' pixels together), so the
    same 3-D point keeps the same feature in both frames. With C <= `channels` only the
    centring and renormalising happen. Returns (B, c, h, w) twice, unit vectors per pixel.
    """
    proj = fit_projection([f_tgt, f_src], channels)
    return proj.apply(f_tgt), proj.apply(f_src)


SUBSPACE_ITERATIONS = 4  # power steps: the 32-dim subspace settles in a few (a full eigh cost 10-50x more here)


def _leading_axes(S: torch.Tensor, k: int) -> torch.Tensor:  # noqa: N803
    """(B, C, k) orthonormal basis of the k leading eigenvectors' span of PSD (B, C, C), by subspace iteration.

    Starts from the k columns of S with the largest norms (deterministic; they already lie
    mostly in the leading span), then alternates S Q and a QR.
    """
    start = S.norm(dim=1).topk(k, dim=1).indices  # (B, k)
    Q = S.gather(2, start[:, None].expand(-1, S.shape[1], -1))  # (B, C, k)
    with one_thread(S.device):  # tiny batched QRs: threads only wait on each other (serial.py)
        Q = torch.linalg.qr(Q)[0]
        for _ in range(SUBSPACE_ITERATIONS):
            Q = torch.linalg.qr(S @ Q)[0]
    return Q


def _unit(f: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) maps scaled to unit length per pixel."""
    return f / ((f * f).sum(1, keepdim=True).sqrt() + EPS)


@torch.no_grad()
def extract(model: DepthNet | None, rgb: torch.Tensor, kind: str, strides: tuple[int, ...]) -> Pyramid:
    """The feature pyramid of a batch of frames.

    Args:
        model: the depth network (needed for `encoder`, ignored for `rgb`); its own
            device and mode are used, so call `.eval()` first (dropout off).
        rgb: (B, 3, H, W) RGB in [0, 1], on the model's device.
        kind: `encoder` (the network's `encode` maps, centred and L2-normalised per
            pixel) or `rgb` (the standardised luminance, one channel, average-pooled to each stride).
        strides: the levels wanted, e.g. (1, 2, 4, 8); those the features do not offer
            are left out (a depth-2 U-Net has no stride 8).

    Returns:
        The `Pyramid`, float32.
    """
    hw = (int(rgb.shape[-2]), int(rgb.shape[-1]))
    want = tuple(sorted(strides))
    if kind == "encoder":
        if model is None:
            raise ValueError("features 'encoder' need the depth network")
        return _encoder_pyramid(model, _encode(model, rgb), want, hw)
    if kind != "rgb":
        raise ValueError(f"unknown feature kind {kind!r}; allowed: {', '.join(FEATURE_KINDS)}")
    x = (rgb.float() * LUMA.to(rgb.device)[:, None, None]).sum(1, keepdim=True)  # (B, 1, H, W)
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True)
    x = (x - mean) / (var.sqrt() + EPS)
    have = tuple(s for s in RGB_STRIDES if s in want)
    levels, kept = _pick([x if s == 1 else F.avg_pool2d(x, s) for s in have], have, want)
    return Pyramid(levels=levels, strides=kept, image_hw=hw, kind="rgb")


@torch.no_grad()
def extract_with_depth(model: DepthNet, rgb: torch.Tensor, strides: tuple[int, ...]) -> tuple[Pyramid, torch.Tensor]:
    """The encoder pyramid and the predicted depth from one encoder pass (`encoder` + `predicted`).

    Returns:
        (pyramid, depth (B, 1, H, W) metres): `model(rgb)` without running the encoder twice.
    """
    H, W = rgb.shape[-2:]
    feats = _encode(model, rgb)
    with _autocast(rgb.device):  # the depth head runs in float32 under autocast (DepthHead)
        depth = model.decode(feats)[..., :H, :W].float()  # a backbone decodes at its padded size
    return _encoder_pyramid(model, feats, tuple(sorted(strides)), (int(H), int(W))), depth


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast where the device computes bf16 natively (`native_bf16`), else a no-op."""
    return torch.autocast(device.type, torch.bfloat16, enabled=native_bf16(device))


def _encode(model: DepthNet, rgb: torch.Tensor) -> list[torch.Tensor]:
    """`model.encode(rgb)`, in bf16 where the device has it natively, channels-last.

    Why: the network, not the solver, bounds the encoder variants' speed. At 240x320 on a
    2-core AMX CPU the default U-Net's encoder took 147 ms a frame in float32 and 28 ms in
    bf16 channels-last (one thread), and the features lose nothing the alignment uses:
    success per gap on real frames was the same to the pair (fr1/rpy dev, demo model,
    128x160: 49/39/19/3 % at gaps 1/2/4/8 both ways). The maps are float32 again after
    (`_encoder_pyramid`), so the solver never sees bf16.
    """
    with _autocast(rgb.device):
        return model.encode(rgb.contiguous(memory_format=torch.channels_last))


def untrained_copy(model: DepthNet, seed: int = 0) -> DepthNet:
    """The same architecture with its initial weights (the control that isolates what training adds).

    Built fresh from the model's own config and input normalisation under `seed`, on the
    model's device, in eval mode; the global RNG state is left as it was. A pretrained
    backbone is rebuilt randomly initialised (no weights are fetched here).
    """
    device = next(model.parameters()).device
    fresh = seeded_model(model.cfg, model.rgb_mean.flatten().tolist(), model.rgb_std.flatten().tolist(), seed)
    return fresh.to(device).eval()


def seeded_model(cfg: ModelParams, rgb_mean: list[float], rgb_std: list[float], seed: int) -> DepthNet:
    """`build_model(cfg, rgb_mean, rgb_std)` at its initial weights under `seed`; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(cfg, rgb_mean, rgb_std)
