"""List files of RGB-D pairs (`data.source: folder`): parsed, checked, and each pair given its scene.

Two formats, told apart by the first pair's line:
- whitespace-separated `<rgb> <depth> [focal]`, as BTS's `nyudepthv2_train_files_with_gt.txt`
  (`/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579`); the
  focal length is checked to be a number and otherwise unused (the U-Net takes no intrinsics);
- comma-separated `rgb,depth`, as DenseDepth's `nyu2_train.csv`
  (`data/nyu2_train/living_room_0038_out/37.jpg,data/nyu2_train/living_room_0038_out/37.png`).

Every path is relative to `data.folder.root`, a leading `/` included (BTS writes them so).
Blank lines and `#` comments are skipped; a line whose depth is `None` (no ground truth: BTS's
KITTI test list has 45, which its evaluation skips) is skipped and counted in the log.

The scene of a pair is the first folder of its RGB path below the folders every RGB path
of the list shares: `kitchen_0028b` for BTS's paths (nothing shared), `living_room_0038`
for DenseDepth's `data/nyu2_train/living_room_0038_out/...` (`data/nyu2_train` shared; the
`_out` DenseDepth appends is dropped). When every RGB file of a list sits in one folder,
that folder is the scene (and files directly in the root take the root's name).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

_DENSEDEPTH_SUFFIX = "_out"  # DenseDepth names its scene folders `<scene>_out`
_RECORDING = re.compile(r"_\d+[a-z]*$")  # NYU's `<type>_<number><recording letter>`: kitchen_0028b


@dataclass(frozen=True)
class Pair:
    """One RGB-D pair of a list file."""

    line: int  # 1-based line in its list file: the `index` the processed files store
    rgb: str  # relative to data.folder.root, as written (without a leading '/')
    depth: str
    scene: str


def scene_type_of(scene: str) -> str:
    """A scene's type: its name without NYU's `_<number><letter>` (`living_room_0038` -> `living_room`)."""
    return _RECORDING.sub("", scene) or scene


def _fields(text: str, csv: bool) -> list[str]:
    return [f.strip() for f in text.split(",")] if csv else text.split()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every line that is not blank or a `#` comment."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a list saved by a Windows editor starts with a BOM
    except FileNotFoundError:
        raise PipelineError(f"{path}: list file not found; check data.folder.train_list / test_list") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: cannot be read as a UTF-8 text list ({e})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def _parse(path: Path) -> tuple[list[tuple[int, str, str]], int]:
    """(line, rgb, depth) of every listed pair, and how many lines had no depth (`None`)."""
    rows, skipped, csv = [], 0, None
    for number, line in _lines(path):
        if csv is None:
            csv = "," in line
        fields = _fields(line, csv)
        where = f"{path} line {number}"
        if len(fields) not in (2, 3) or not all(fields[:2]):
            form = "rgb,depth" if csv else "<rgb> <depth> [focal]"
            raise PipelineError(f"{where}: expected `{form}`, got {line.strip()!r}")
        if len(fields) == 3:
            try:
                float(fields[2])
            except ValueError:
                raise PipelineError(f"{where}: the third field {fields[2]!r} is not a focal length") from None
        if fields[1] == "None":
            skipped += 1
            continue
        rows.append((number, fields[0].lstrip("/"), fields[1].lstrip("/")))
    return rows, skipped


def _check_unique(path: Path, rows: list[tuple[int, str, str]]) -> None:
    """A repeated RGB image would weigh that frame twice (and in val and train alike)."""
    first: dict[str, int] = {}
    for number, rgb, _ in rows:
        key = os.path.normpath(rgb)
        if key in first:
            raise PipelineError(
                f"{path} line {number}: repeats the RGB image of line {first[key]} ({rgb}); remove the duplicate"
            )
        first[key] = number


def _check_exist(path: Path, root: Path, rows: list[tuple[int, str, str]]) -> None:
    """Every listed file is there; the error names the first missing one and counts the rest."""
    missing = [(n, p) for n, rgb, depth in rows for p in (rgb, depth) if not (root / p).is_file()]
    if missing:
        n, p = missing[0]
        more = f" (and {len(missing) - 1} more listed files)" if len(missing) > 1 else ""
        raise PipelineError(
            f"{path} line {n}: no such file {root / p}{more}; the paths are relative to data.folder.root ({root})"
        )


def _scenes(rgb_paths: list[str], default: str) -> list[str]:
    """The scene of every RGB path (see the module docstring); `default` for files directly in the root."""
    folders = [PurePosixPath(p).parent.parts for p in rgb_paths]
    shared = os.path.commonprefix(folders) if folders else ()  # common leading folders, whole names only
    scenes = []
    for parts in folders:
        below = parts[len(shared) :]
        name = below[0] if below else (parts[-1] if parts else default)
        scenes.append(name.removesuffix(_DENSEDEPTH_SUFFIX) or name)
    return scenes


def read_pairs(path: str | Path, root: str | Path) -> list[Pair]:
    """Reads and checks a list file of RGB-D pairs.

    Args:
        path: the list file (whitespace or CSV format, see the module docstring).
        root: the folder its paths are relative to.

    Returns:
        The pairs in list order, each with its 1-based line number and scene.

    Raises:
        PipelineError: a missing or empty list, a malformed line, a repeated RGB image or a
            listed file that does not exist; the message names the list file and line.
    """
    path, root = Path(path), Path(root)
    rows, skipped = _parse(path)
    if skipped:
        log.warning("%s: skipped %d line(s) whose depth is None (no ground truth)", path, skipped)
    if not rows:
        raise PipelineError(f"{path}: the list holds no pairs; expected `<rgb> <depth> [focal]` or `rgb,depth` lines")
    _check_unique(path, rows)
    _check_exist(path, root, rows)
    scenes = _scenes([rgb for _, rgb, _ in rows], root.resolve().name)
    log.info("%s: %d pairs in %d scenes (e.g. %s)", path, len(rows), len(set(scenes)), scenes[0])
    return [Pair(n, rgb, depth, scene) for (n, rgb, depth), scene in zip(rows, scenes, strict=True)]


def check_disjoint(train: list[Pair], test: list[Pair], train_list: Path, test_list: Path) -> None:
    """No RGB image is in both lists: a test frame seen in training would flatter every metric.

    Raises:
        PipelineError: naming the first shared image and its line in each list.
    """
    test_lines = {os.path.normpath(p.rgb): p.line for p in test}
    for p in train:
        line = test_lines.get(os.path.normpath(p.rgb))
        if line is not None:
            raise PipelineError(
                f"{train_list} line {p.line} and {test_list} line {line} list the same image ({p.rgb}); "
                "a test frame must not be trained on"
            )
