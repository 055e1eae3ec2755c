"""The sequences stage: `run(params, root)` fills `paths.sequences` with RGB-D sequences in TUM RGB-D's layout.

One sub-folder per sequence, whatever the source (`sequences.source`): rendered
(`synthetic`), TUM RGB-D's own (`tum`, fetched once into `sequences.tum.download_dir`), or
TUM-layout folders already on disk (`folder`). The whole folder is built aside and swapped
in complete (`atomic_dir`), and every sequence is read back with `read_sequence` before the
swap, so a sequence the pose code cannot read never reaches the output.
With `sequences.enabled: false` nothing is fetched or rendered, and the folder holds only
`NOTE.txt` (DVC has no optional outputs, as the download stage's placeholders).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Params, to_yaml_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json_atomic, write_text_atomic
from pipeline.sequences.layout import list_sequences, read_sequence, write_sequence

log = logging.getLogger(__name__)

NOTE = "NOTE.txt"
MANIFEST = "sequences.json"  # beside the sequence folders: the params that made them and their frame counts
DISABLED_NOTE = (
    "No sequences: sequences.enabled is false in params.yaml, so nothing was downloaded or rendered. "
    "This note stands in for them because DVC requires every stage output to exist.\n"
)


def _synthetic(params: Params, staging: Path) -> None:
    from pipeline.sequences.synthetic import plan_sequence, render_sequence  # only this source renders

    synthetic = params.sequences.synthetic
    for k in range(synthetic.n):
        plan = plan_sequence(synthetic, k)
        write_sequence(staging / plan.name, **render_sequence(synthetic, plan))


def _tum(params: Params, root: Path, staging: Path) -> None:
    from pipeline.sequences.tum import fetch_tum, link_sequence

    for src in fetch_tum(params.sequences.tum, root):
        link_sequence(src, staging / src.name, hard_link=True)


def _folder(params: Params, root: Path, staging: Path) -> None:
    from pipeline.sequences.tum import link_sequence

    src_root = Path(root) / params.sequences.folder_root
    found = list_sequences(src_root)
    if not found:
        raise PipelineError(
            f"{src_root}: holds no sequence folder (a folder with rgb.txt, depth.txt, groundtruth.txt); "
            "put TUM-layout sequences there or set sequences.folder_root"
        )
    for src in found:
        link_sequence(src, staging / src.name, hard_link=False)


def run(params: Params, root: Path) -> dict:
    """Writes `paths.sequences` under `root`: one TUM-layout folder per sequence, or only a note when disabled.

    Beside the folders, `sequences.json` records the `sequences` params that made them and each
    sequence's associated frame count.

    Returns:
        {"sequences": the folder, "names": [sequence names], "frames": {name: associated frames}}.

    Raises:
        PipelineError: a download failed, a sequence does not read back (see `read_sequence`),
            or the folder source holds no sequence. The output folder is then left as it was.
    """
    seq, out = params.sequences, params.paths.resolve(root).sequences
    if not seq.enabled:
        with atomic_dir(out) as staging:
            write_text_atomic(staging / NOTE, DISABLED_NOTE)
        log.info("sequences disabled: %s holds only %s", out, NOTE)
        return {"sequences": out, "names": [], "frames": {}}
    with atomic_dir(out) as staging:
        if seq.source == "synthetic":
            _synthetic(params, staging)
        elif seq.source == "tum":
            _tum(params, Path(root), staging)
        else:
            _folder(params, Path(root), staging)
        frames = {p.name: len(read_sequence(p, seq.tolerance_s).frames) for p in list_sequences(staging)}
        write_json_atomic(staging / MANIFEST, {"sequences": to_yaml_dict(seq), "frames": frames})
    for name, n in frames.items():
        log.info("sequence %s: %d associated RGB-D frames", name, n)
    return {"sequences": out, "names": sorted(frames), "frames": frames}
