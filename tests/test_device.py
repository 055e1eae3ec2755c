"""The device helpers: which devices compute bf16 natively (the pose features' precision follows it)."""

from __future__ import annotations

import builtins
import io

import pytest
import torch

from pipeline.device import _cpu_has_bf16, native_bf16


def _cpuinfo(monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    """/proc/cpuinfo reads as `text` (None: unreadable, as off Linux)."""
    real_open = builtins.open

    def fake(path, *a, **k):
        if str(path) != "/proc/cpuinfo":
            return real_open(path, *a, **k)
        if text is None:
            raise FileNotFoundError(path)
        return io.StringIO(text)

    monkeypatch.setattr(builtins, "open", fake)
    _cpu_has_bf16.cache_clear()  # read once a process: make this test's read the one


@pytest.fixture(autouse=True)
def _fresh_flags():
    """Leaves no faked answer in native_bf16's cache for later tests."""
    yield
    _cpu_has_bf16.cache_clear()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu sse2 avx2 amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True), ("fpu sse2 avx2 avx512f", False)],
)
def test_a_cpu_has_native_bf16_only_with_its_matrix_units(monkeypatch, flags: str, expected: bool) -> None:
    _cpuinfo(monkeypatch, f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert native_bf16(torch.device("cpu")) is expected


def test_no_cpuinfo_or_another_device_means_float32(monkeypatch) -> None:
    _cpuinfo(monkeypatch, None)
    assert native_bf16(torch.device("cpu")) is False
    assert native_bf16(torch.device("mps")) is False
