"""`sequences.source: tum` and `folder`: TUM RGB-D's sequences, fetched or found, linked into paths.sequences.

Each archive (`<mirror>/freiburg1/rgbd_dataset_freiburg1_desk.tgz`) is fetched and unpacked
by `fetch_and_unpack` (mirrors, resume, retries, SHA-256 when pinned, safe and atomic
unpack) into `sequences.tum.download_dir/<name>`, once: a later run finds it unpacked and
fetches nothing. TUM publishes no checksums, so an unpinned archive's SHA-256 is logged at
its first download (`fetch`'s warning), to be pasted into `sequences.tum.sha256`.

The archive holds one folder, `rgbd_dataset_freiburg1_desk/` (rgb/, depth/, rgb.txt,
depth.txt, groundtruth.txt, accelerometer.txt). Its files are hard-linked (copied across
file systems) into the stage's output, with a `calibration.txt` of the freiburg Kinect's
intrinsics, so every sequence folder is self-contained.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from PIL import Image

from pipeline.config import TumParams
from pipeline.data.archive import MARKER, fetch_and_unpack
from pipeline.errors import PipelineError
from pipeline.sequences.calibration import CALIBRATION, freiburg_intrinsics, write_calibration

log = logging.getLogger(__name__)
# Appended to a failed download: the depth pipeline runs offline, so should the sequences.
OFFLINE_HINT = (
    "to run without TUM's servers, render the sequences instead (-S sequences.source=synthetic) "
    "or skip them (-S sequences.enabled=false); docs/getting-started.md: Offline"
)


def folder_name(name: str) -> str:
    """TUM's folder (and archive) name of a sequence: freiburg1_desk -> rgbd_dataset_freiburg1_desk."""
    return f"rgbd_dataset_{name}"


def fetch_tum(tum: TumParams, root: Path) -> list[Path]:
    """Every sequence of `tum.names` unpacked under `root / tum.download_dir`; returns their TUM folders.

    Raises:
        PipelineError: a download failed or did not verify, or an archive is not TUM's layout.
    """
    out = []
    for name, sha256 in zip(tum.names, tum.sha256, strict=True):
        unpack_dir = Path(root) / tum.download_dir / name
        try:
            fetch_and_unpack(tum.urls(name), sha256, unpack_dir, tum.retries)
        except PipelineError as e:
            raise PipelineError(f"{e}; {OFFLINE_HINT}") from e
        inner = unpack_dir / folder_name(name)
        if not (inner / "rgb.txt").is_file():
            raise PipelineError(
                f"{unpack_dir}: the archive holds no {folder_name(name)}/rgb.txt (not TUM RGB-D's layout); "
                f"check sequences.tum.mirrors, delete {unpack_dir} and run again"
            )
        out.append(inner)
    return out


def _image_size(folder: Path) -> tuple[int, int]:
    """(width, height) of the sequence's first RGB image (TUM's are all one size)."""
    first = next(iter(sorted((folder / "rgb").glob("*.png"))), None)
    if first is None:
        raise PipelineError(f"{folder / 'rgb'}: holds no PNG image; the sequence is empty")
    with Image.open(first) as img:
        return img.size


def link_sequence(src: Path, dest: Path, hard_link: bool) -> None:
    """Puts sequence folder `src`'s files at `dest`, plus a calibration.txt if it has none.

    Args:
        src: a TUM-layout sequence folder (never modified).
        dest: the folder to fill.
        hard_link: hard-link the files (copy across file systems): for the stage's own download
            folder, whose files nobody edits; False copies them (a user's folder: an edit in place
            there must not change the output behind DVC's back).

    Raises:
        PipelineError: `src` has no calibration.txt and its name names no freiburg Kinect.
    """
    for path in sorted(src.rglob("*")):
        if path.name == MARKER or path.is_dir():
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not hard_link:
                raise OSError
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    if not (dest / CALIBRATION).is_file():
        k = freiburg_intrinsics(src.name)
        if k is None:
            raise PipelineError(
                f"{src}: no {CALIBRATION} and its name names no TUM Kinect (freiburg1/2/3); "
                "add one line 'fx fy cx cy' (pixels, at the images' size) as calibration.txt"
            )
        write_calibration(dest, k.scaled(*_image_size(dest)))  # TUM's are 640x480: the values as published
    log.info("%s -> %s", src, dest)
