"""Atomic file output and hashing, shared by every stage that writes files.

A stage killed at any point (Ctrl-C, kill -9, a full disk) must never leave a
half-written file at an output path, nor destroy a good file already there: we
write to a temporary sibling (same folder, so the final `os.replace` is an atomic
rename on the same filesystem) and rename only once the content is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    On any exception the temporary file is removed and `path` is left untouched.

    Args:
        path: the final output path. Its parent folder is created if missing.
        suffix: appended after the temporary marker, for libraries that infer the
            format from the extension (e.g. ".png").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        # After a successful replace `tmp` no longer exists; after a failure it may.
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes a text file atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Writes `obj` as indented JSON atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _hash_file(path: str | Path, algorithm: str, chunk_bytes: int) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (never the whole file in memory)."""
    return _hash_file(path, "sha256", chunk_bytes)


def md5_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """MD5 hex digest of a file, in chunks: the hash DVC 3 records for a file (of its bytes as they are)."""
    return _hash_file(path, "md5", chunk_bytes)


def _remove_stale_staging(out_dir: Path) -> None:
    """Removes staging folders left by runs that were killed (-9) and whose process is gone."""
    for p in out_dir.parent.glob(f".{out_dir.name}.*.*"):
        pid = p.name.removeprefix(f".{out_dir.name}.").split(".")[0]
        if not pid.isdigit() or p.suffix not in (TMP_SUFFIX, ".old"):
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


@contextlib.contextmanager
def atomic_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside `out_dir`; swaps it in if the block succeeds.

    The swap is two renames on one filesystem (old aside, new in), then the old one is
    deleted; on any failure the temporary folder is removed and `out_dir` is untouched.
    Staging folders of earlier runs killed with -9 are removed first.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}{TMP_SUFFIX}")
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    _remove_stale_staging(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        had_old = out_dir.exists()
        if had_old:
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if had_old:
                os.replace(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
