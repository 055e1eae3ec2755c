"""The align_data stage: `run(params, root)` renders the alignment term's training sequences to `paths.align_data`.

The term (`pipeline.pose.unroll`, `loss.align`) needs frame pairs with exact relative
motion and depth that neither the evaluation nor the depth data has seen. They are
rendered like the evaluation sequences (`pipeline.sequences.synthetic`: the same walks,
renderer and TUM layout) in rooms of their own: training sequence i is the synthetic
source's sequence number `FIRST_ROOM + i`, whose room, walk and clocks come from seed
streams keyed by that number. The evaluation sequences use numbers below 1000
(`sequences.synthetic.n` <= 1000), so whatever the two seeds, no training room is an
evaluation room (their names differ too: `<type>_101xxx` against `<type>_100xxx`), and
the depth data's rooms come from other streams altogether (`pipeline.synthetic.dataset`).
Frames are rendered at the training resolution (`preprocess.height/width`): the term
aligns them there, as the pose stage does.

With `loss.align.weight` 0 nothing is rendered: the folder holds only `NOTE.txt`, so the
default DAG costs a few milliseconds more and nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Params, SyntheticSequencesParams, to_yaml_dict
from pipeline.io import atomic_dir, write_json_atomic, write_text_atomic
from pipeline.sequences.layout import list_sequences, read_sequence, write_sequence
from pipeline.sequences.synthetic import plan_sequence, render_sequence

log = logging.getLogger(__name__)

FIRST_ROOM = 1000  # above every evaluation sequence's number (sequences.synthetic.n <= 1000)
FPS = 30.0  # the Kinect's rate, as the evaluation sequences: the gaps mean the same motion
NOTE = "NOTE.txt"
MANIFEST = "align_sequences.json"
OFF_NOTE = (
    "No alignment training sequences: loss.align.weight is 0 in params.yaml, so nothing was rendered. "
    "This note stands in for them because DVC requires every stage output to exist.\n"
)


def render_params(params: Params) -> SyntheticSequencesParams:
    """The synthetic source's params for the training sequences: `loss.align`'s count, length, seed; training size."""
    a = params.loss.align
    return SyntheticSequencesParams(n=a.sequences, frames=a.frames, fps=FPS, height=params.preprocess.height,
                                    width=params.preprocess.width, seed=a.seed)  # fmt: skip


def run(params: Params, root: Path) -> dict:
    """Writes `paths.align_data` under `root`: TUM-layout training sequences, or only a note when the term is off.

    Returns:
        {"align_data": the folder, "names": [sequence names], "frames": {name: associated frames}}.
    """
    out = params.paths.resolve(root).align_data
    if params.loss.align.weight == 0:
        with atomic_dir(out) as staging:
            write_text_atomic(staging / NOTE, OFF_NOTE)
        log.info("loss.align.weight is 0: %s holds only %s", out, NOTE)
        return {"align_data": out, "names": [], "frames": {}}
    spec = render_params(params)
    with atomic_dir(out) as staging:
        for i in range(spec.n):
            plan = plan_sequence(spec, FIRST_ROOM + i)
            write_sequence(staging / plan.name, **render_sequence(spec, plan))
        frames = {p.name: len(read_sequence(p, 0.02).frames) for p in list_sequences(staging)}
        write_json_atomic(staging / MANIFEST, {"render": to_yaml_dict(spec), "frames": frames})
    log.info("align_data: %d training sequences of %d frames in %s", len(frames), spec.frames, out)
    return {"align_data": out, "names": sorted(frames), "frames": frames}
