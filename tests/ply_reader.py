"""A minimal reader of the binary PLY files `pipeline.pointcloud.write_ply` writes, independent of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_ply(path: Path) -> tuple[list[str], np.ndarray]:
    """A minimal reader for the files `write_ply` claims to write: (header lines, structured vertices)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    (count,) = [int(line.split()[2]) for line in header if line.startswith("element vertex")]
    types = {"float": "<f4", "uchar": "u1"}
    fields = [(line.split()[2], types[line.split()[1]]) for line in header if line.startswith("property")]
    vertices = np.frombuffer(data[end:], dtype=np.dtype(fields))
    assert len(vertices) == count  # exactly `count` records, no trailing bytes
    return header, vertices
