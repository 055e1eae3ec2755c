"""Tiny folder-source datasets in the two published layouts, and archives of them.

- BTS's sync layout: `<scene>/rgb_XXXXX.jpg` + `<scene>/sync_depth_XXXXX.png` (16-bit mm,
  0 = no measurement), a whitespace list with a leading `/` and a focal length.
- DenseDepth's layout: `data/nyu2_train/<scene>_out/<i>.jpg` + `<i>.png` (8-bit), a CSV list
  inside the root (`data/nyu2_train.csv`).

Scenes come in sibling recordings (`kitchen_0001a`, `kitchen_0001b`: one room), so the
room-disjoint validation split is testable.
"""

from __future__ import annotations

import copy
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.config import Params
from tests.conftest import repo_raw, shrunk_params

TRAIN_SCENES = ("kitchen_0001a", "kitchen_0001b", "bedroom_0002", "office_0003", "living_room_0004")
TEST_SCENES = ("bathroom_0005", "study_0006")
SIZE = (48, 64)  # (H, W) of the files: the test split keeps it, train/val are resized to the shrunk params'


@dataclass(frozen=True)
class FolderSet:
    root: Path
    train_list: Path
    test_list: Path
    depth_scale: float


def _rgb(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _depth(rng: np.random.Generator, size: tuple[int, int], eight_bit: bool) -> np.ndarray:
    """Depth PNG values: 16-bit mm in 0.5-9 m or 8-bit 1..255, with ~10% holes (0)."""
    value = rng.integers(1, 256, size) if eight_bit else rng.integers(500, 9000, size)
    value[rng.random(size) < 0.1] = 0
    return value.astype(np.uint8 if eight_bit else np.uint16)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_bts(root: Path, per_scene: int = 2, size: tuple[int, int] = SIZE, seed: int = 0) -> FolderSet:
    """BTS's sync layout under `root`, its lists beside `root` (as BTS ships them in its repository)."""
    rng = np.random.default_rng(seed)
    lists = {}
    for name, scenes in (("train", TRAIN_SCENES), ("test", TEST_SCENES)):
        lines = []
        for scene in scenes:
            for k in range(per_scene):
                rgb, depth = f"{scene}/rgb_{k:05d}.jpg", f"{scene}/sync_depth_{k:05d}.png"
                save(root / rgb, _rgb(rng, size))
                save(root / depth, _depth(rng, size, eight_bit=False))
                lines.append(f"/{rgb} /{depth} 518.8579")
        lists[name] = root.parent / f"nyudepthv2_{name}_files_with_gt.txt"
        lists[name].write_text("\n".join(lines) + "\n")
    return FolderSet(root, lists["train"], lists["test"], 1000.0)


def make_densedepth(root: Path, per_scene: int = 2, size: tuple[int, int] = SIZE, seed: int = 1) -> FolderSet:
    """DenseDepth's nyu_data layout under `root`, CSV lists inside it."""
    rng = np.random.default_rng(seed)
    lists = {}
    for name, scenes in (("train", TRAIN_SCENES), ("test", TEST_SCENES)):
        rows = []
        for scene in scenes:
            for k in range(per_scene):
                stem = f"data/nyu2_{name}/{scene}_out/{k + 1}"
                save(root / f"{stem}.jpg", _rgb(rng, size))
                save(root / f"{stem}.png", _depth(rng, size, eight_bit=True))
                rows.append(f"{stem}.jpg,{stem}.png")
        lists[name] = root / f"data/nyu2_{name}.csv"
        lists[name].write_text("\n".join(rows) + "\n")
    return FolderSet(root, lists["train"], lists["test"], 25.5)


def folder_params(fs: FolderSet, base: Path, **overrides: Any) -> dict[str, Any]:
    """The `data.folder` section for `fs` (paths relative to `base`, the stage root), with overrides."""
    section = copy.deepcopy(repo_raw()["data"]["folder"])
    section.update(
        root=str(fs.root.relative_to(base)),
        train_list=str(fs.train_list.relative_to(base)),
        test_list=str(fs.test_list.relative_to(base)),
        test_from="list",
        depth_scale=fs.depth_scale,
        url="",
        sha256="",
        unpack_dir=str(fs.root.relative_to(base)),
    )
    section.update(overrides)
    return section


def params_for(fs: FolderSet, base: Path, data: dict[str, Any] | None = None, **folder: Any) -> Params:
    """Shrunk params with `data.source: folder` on `fs`."""
    return shrunk_params(data={"source": "folder", "folder": folder_params(fs, base, **folder), **(data or {})})


def zip_of(root: Path) -> bytes:
    """A zip of the files under `root`, with `root`'s name as the top-level folder (as BTS's sync.zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"{root.name}/{path.relative_to(root)}")
    return buf.getvalue()


def tar_of(root: Path) -> bytes:
    """A gzipped tar of `root` (top-level folder `root.name`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root, arcname=root.name)
    return buf.getvalue()


def png_values(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def decoded_rgb(path: Path) -> np.ndarray:
    """The RGB as Pillow decodes it (JPEG is lossy: the reference is the same decoder's output)."""
    return np.asarray(Image.open(path).convert("RGB"))
