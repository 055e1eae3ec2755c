"""`estimate`: each frame's features extracted once per sequence, whatever the gaps and depth variants."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.camera import NYU_KINECT
from pipeline.pose import AlignOptions, align, extract
from pipeline.pose import estimate as est
from pipeline.pose.estimate import FrameCache, Variant, estimate_group
from pipeline.pose.frames import SequenceFrames, pairs_for
from pipeline.pose.pairs import synthetic_pairs

SIZE = (48, 64)
OPTS = AlignOptions(strides=(1, 2), iterations=5)


def _frames(n: int) -> SequenceFrames:
    """N frames of synthetic rooms (motion between them does not matter here)."""
    p = synthetic_pairs(list(range(n)), SIZE)
    rgb = (p.rgb_tgt.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    return SequenceFrames("s", np.arange(n, dtype=float), None, rgb, p.depth_tgt[:, 0].numpy(),
                          NYU_KINECT.scaled(SIZE[1], SIZE[0]), np.zeros(n, bool))  # fmt: skip


def test_each_frame_is_extracted_once_for_all_gaps_and_depths(monkeypatch) -> None:
    frames, pairs = _frames(5), pairs_for(5, [1, 2, 3])
    calls: list[int] = []
    real = est.extract

    def counted(net, rgb, kind, strides):
        calls.append(rgb.shape[0])
        return real(net, rgb, kind, strides)

    monkeypatch.setattr(est, "extract", counted)
    group = [Variant("rgb", "sensor"), Variant("rgb", "predicted")]
    predicted = frames.depth * 1.1
    out = estimate_group(frames, pairs, group, None, predicted, OPTS, 3, torch.device("cpu"))  # type: ignore[arg-type]
    assert sum(calls) == 5  # formerly 2 frames x (4 + 3 + 2) pairs x 2 depths = 36
    # Same motions as aligning each pair on its own.
    for v, depth in [(group[0], frames.depth), (group[1], predicted)]:
        t, s = pairs.target, pairs.source
        tgt = extract(None, frames.rgb_tensor(t, torch.device("cpu")), "rgb", OPTS.strides)
        src = extract(None, frames.rgb_tensor(s, torch.device("cpu")), "rgb", OPTS.strides)
        ref = align(tgt, src, torch.from_numpy(depth[t])[:, None], frames.intrinsics, None, OPTS)
        assert np.allclose(out[v.name].motion, ref.T.double().numpy(), atol=1e-4)
        assert list(out[v.name].status) == [("converged", "not_finite", "few_valid", "high_residual",
                                             "iteration_cap", "damping_limit")[k] for k in ref.status]  # fmt: skip


def test_frame_cache_evicts_the_least_recently_used() -> None:
    frames = _frames(4)
    cache = FrameCache(None, "rgb", (1,), capacity=2)
    cpu = torch.device("cpu")
    first = cache.pyramid(frames, np.array([0, 1]), cpu)
    cache.pyramid(frames, np.array([1, 2]), cpu)  # 0 leaves
    assert list(cache.frames) == [1, 2] and cache.extracted == 3
    again = cache.pyramid(frames, np.array([0]), cpu)
    assert cache.extracted == 4 and torch.equal(again.levels[0][0], first.levels[0][0])
