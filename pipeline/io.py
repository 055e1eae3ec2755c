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


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
