"""The alignment term during training: its frame pairs, drawn per step, and its loss on the network being trained.

The pairs come from `paths.align_data` (stage align_data: rendered sequences in rooms of
their own), read once at the training resolution and kept on the device. Each step draws
`loss.align.pairs_per_step` pairs (a gap from `loss.align.gaps`, a target frame, the
source `gap` frames later) from a generator of its own, reseeded every epoch from
(`loss.align.seed`, epoch, rank): each DDP rank aligns its own pairs, a resumed run draws
what it would have, and no other random stream (shuffle, augmentation, dropout) moves, so
the depth batches are the ones a run without the term sees. The loss itself is
`pipeline.pose.unroll.align_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.camera import Intrinsics
from pipeline.config import AlignLossParams
from pipeline.errors import PipelineError
from pipeline.model.build import DepthNet
from pipeline.pose.features import level_offsets
from pipeline.pose.frames import load_frames, pairs_for
from pipeline.pose.solver import AlignOptions
from pipeline.pose.unroll import align_loss, encoder_pairs, perturb
from pipeline.sequences.layout import list_sequences, read_sequence
from pipeline.training.seeding import derive_seed
from pipeline.trajectory.poses import relative_motion

STRIDES = (1, 2, 4, 8)  # the pose stage's levels (AlignOptions' default): trained as they are used


@dataclass(frozen=True)
class PairBank:
    """Every training pair, resident on the device (F frames, P pairs).

    Attributes:
        rgb: (F, 3, h, w) float32 in [0, 1].
        depth: (F, 1, h, w) float32 metres, 0 = none.
        target: (P,) long frame index of each pair's target i.
        source: (P,) long frame index of its source j.
        truth: (P, 4, 4) float32 T_j_from_i.
        camera: the intrinsics every sequence shares at (h, w).
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    target: torch.Tensor
    source: torch.Tensor
    truth: torch.Tensor
    camera: Intrinsics

    def __len__(self) -> int:
        return len(self.target)


def load_pairs(folder: Path, hw: tuple[int, int], gaps: list[int], device: torch.device) -> PairBank:
    """The pairs (every gap in `gaps`, both frames with ground truth) of every sequence in `folder`, at hw.

    Raises:
        PipelineError: no sequences there (loss.align.weight was 0 when align_data ran), or they differ in camera.
    """
    seqs = list_sequences(folder)
    if not seqs:
        raise PipelineError(f"{folder}: no training sequences for loss.align; run `dvc repro align_data`")
    rgb, depth, tgt, src, truth, cameras, offset = [], [], [], [], [], set(), 0
    for path in seqs:
        frames = load_frames(read_sequence(path), hw, 0)
        n, ok = len(frames), frames.has_groundtruth
        pairs = pairs_for(n, gaps)  # (i, i + gap), as the pose stage pairs frames; both poses known
        both = ok[pairs.target] & ok[pairs.source]
        i, j = pairs.target[both], pairs.source[both]
        rgb.append(frames.rgb_tensor(np.arange(n), device))
        depth.append(frames.depth_tensor(np.arange(n), device))
        tgt.append(i + offset)
        src.append(j + offset)
        truth.append(relative_motion(frames.groundtruth[i], frames.groundtruth[j]))
        cameras.add(frames.intrinsics)
        offset += n
    if len(cameras) != 1:
        raise PipelineError(f"{folder}: the training sequences differ in camera; loss.align needs one")
    as_long = lambda a: torch.from_numpy(np.concatenate(a)).long().to(device)  # noqa: E731
    return PairBank(torch.cat(rgb), torch.cat(depth), as_long(tgt), as_long(src),
                    torch.from_numpy(np.concatenate(truth)).float().to(device), cameras.pop())  # fmt: skip


class AlignTerm:
    """Draws a step's pairs and computes the term's loss on the network being trained."""

    def __init__(self, cfg: AlignLossParams, bank: PairBank, net: DepthNet) -> None:
        if len(bank) == 0:
            raise PipelineError("loss.align: the training sequences hold no pair at loss.align.gaps")
        self.cfg, self.bank = cfg, bank
        self.opts = AlignOptions(strides=STRIDES)
        self.gen = torch.Generator()  # CPU: tiny draws; the indices move to the device
        # `level_offsets` traces one forward pass; in eval mode, so batch norm's running
        # statistics never see its all-zero probe image.
        was_training = net.training
        net.eval()
        level_offsets(net)
        net.train(was_training)

    @property
    def weight(self) -> float:
        """`loss.align.weight`."""
        return self.cfg.weight

    def reseed(self, epoch: int, rank: int) -> None:
        """Each epoch's (and rank's) pairs are a pure function of the seed: resumes and ranks draw their own."""
        self.gen.manual_seed(derive_seed(self.cfg.seed, epoch, rank, 3))

    def loss(self, net: DepthNet, layout: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The term on `pairs_per_step` fresh pairs (scalar, with gradients to the encoder).

        Args:
            net: the bare network (its `encode`; under DDP the gradients reach the same parameters).
            layout: the trainer's input layout (channels_last or not).
        """
        b, cfg = self.bank, self.cfg
        pick = torch.randint(len(b), (cfg.pairs_per_step,), generator=self.gen).to(b.target.device)  # (n,)
        i, j, truth = b.target[pick], b.source[pick], b.truth[pick]
        start = perturb(truth.cpu(), cfg.perturb_rot_deg, cfg.perturb_trans_m, self.gen).to(truth.device)
        tgt, src = encoder_pairs(net, layout(b.rgb[i]), layout(b.rgb[j]), self.opts.strides)
        value, _ = align_loss(tgt, src, b.depth[i], truth, start, b.camera, self.opts, cfg.iterations, cfg.error)
        return value


def build_align_term(cfg: AlignLossParams, folder: Path, hw: tuple[int, int], net: DepthNet,
                     device: torch.device) -> AlignTerm | None:  # fmt: skip
    """The term, or None when `loss.align.weight` is 0 (then nothing is read and training is today's)."""
    if cfg.weight == 0:
        return None
    return AlignTerm(cfg, load_pairs(folder, hw, cfg.gaps, device), net)
