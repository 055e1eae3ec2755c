"""Unpacking `data.folder.url`'s archive: crafted archives that write outside are refused, unpacks are atomic."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.data import archive
from pipeline.data.archive import MARKER, fetch_and_unpack
from pipeline.errors import PipelineError


def _zip(members: list[tuple[str, bytes, str | None]]) -> bytes:
    """A zip of (name, data, symlink target or None) members, as a hostile tool could write it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, link in members:
            info = zipfile.ZipInfo(name)
            if link is not None:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = link.encode()
            zf.writestr(info, data)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


OK = ("data/a.txt", b"fine")
HOSTILE: dict[str, Callable[[], bytes]] = {
    "zip ..": lambda: _zip([(*OK, None), ("data/../../evil.txt", b"x", None)]),
    "zip absolute": lambda: _zip([(*OK, None), ("/tmp/nyu-pipeline-test-evil.txt", b"x", None)]),
    "zip backslash ..": lambda: _zip([(*OK, None), ("data\\..\\..\\evil.txt", b"x", None)]),
    "zip symlink out": lambda: _zip([(*OK, None), ("data/link", b"", "../../outside")]),
    "zip absolute symlink": lambda: _zip([(*OK, None), ("data/link", b"", "/etc")]),
    "tar ..": lambda: _tar([OK, ("../evil.txt", b"x")]),
    "tar absolute": lambda: _tar([OK, ("/tmp/nyu-pipeline-test-evil.txt", b"x")]),
    "tar symlink out": lambda: _tar([OK, _link("data/link", "../../outside")]),
    "tar absolute symlink": lambda: _tar([OK, _link("data/link", "/etc")]),
    "tar hardlink out": lambda: _tar([OK, _link("data/hard", "../outside.txt", tarfile.LNKTYPE)]),
    "tar device": lambda: _tar([OK, _device("data/tty")]),
}


def _put(tmp_path: Path, blob: bytes, name: str = "dl/archive.bin") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_members_landing_outside_are_refused_and_nothing_is_unpacked(tmp_path: Path, case: str) -> None:
    src = _put(tmp_path, HOSTILE[case]())
    dest = tmp_path / "work" / "raw" / "set"
    with pytest.raises(PipelineError) as e:
        fetch_and_unpack([str(src)], "", dest, retries=0)
    assert "\n" not in str(e.value) and "refusing to unpack" in str(e.value), e.value
    assert not dest.exists()  # no half-filled folder
    assert not list(dest.parent.glob(f".{dest.name}.*"))  # no staging folder left
    everything = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert not any("evil" in p or "outside" in p for p in everything), everything
    assert not (Path("/tmp/nyu-pipeline-test-evil.txt")).exists()


def test_links_inside_the_folder_are_kept(tmp_path: Path) -> None:
    blob = _zip([("set/rgb/1.jpg", b"jpeg", None), ("set/alias.jpg", b"", "rgb/1.jpg")])
    dest = fetch_and_unpack([str(_put(tmp_path, blob))], "", tmp_path / "out", retries=0)
    assert os.readlink(dest / "set/alias.jpg") == "rgb/1.jpg" and (dest / "set/alias.jpg").read_bytes() == b"jpeg"
    assert json.loads((dest / MARKER).read_text()) == {"sha256": "", "members": 2}


def test_an_interrupted_unpack_leaves_no_folder_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out"
    old = _put(tmp_path, _zip([("v1.txt", b"old", None)]), "dl/v1.zip")
    fetch_and_unpack([str(old)], "", dest, retries=0)
    (dest / MARKER).write_text(json.dumps({"sha256": "0" * 64, "members": 1}))  # as if from another archive
    new = _zip([("v2/a.txt", b"a", None), ("v2/b.txt", b"b", None)])
    calls = {"n": 0}
    real_copy = archive.shutil.copyfileobj

    def dies_on_the_second_file(src: object, dst: object, length: int = 0) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C halfway through the unpack
        real_copy(src, dst, length)

    monkeypatch.setattr(archive.shutil, "copyfileobj", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        fetch_and_unpack([str(_put(tmp_path, new, "dl/v2.zip"))], hashlib.sha256(new).hexdigest(), dest, retries=0)
    assert (dest / "v1.txt").read_text() == "old" and not (dest / "v2").exists()  # the complete old one stays
    assert not list(tmp_path.glob(".out.*"))


def test_a_folder_it_did_not_unpack_is_never_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "my_data.png").write_bytes(b"precious")
    src = _put(tmp_path, _zip([OK + (None,)]))
    with pytest.raises(PipelineError, match="was not unpacked by the download stage"):
        fetch_and_unpack([str(src)], "", dest, retries=0)
    assert (dest / "my_data.png").read_bytes() == b"precious"


def test_a_complete_unpack_is_kept_without_fetching(tmp_path: Path) -> None:
    blob = _zip([OK + (None,)])
    sha = hashlib.sha256(blob).hexdigest()
    dest = fetch_and_unpack([str(_put(tmp_path, blob))], sha, tmp_path / "out", retries=0)
    # A dead URL: only keeping the complete folder can succeed.
    assert fetch_and_unpack([str(tmp_path / "nowhere.zip")], sha, dest, retries=0) == dest


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="neither a zip nor a tar"):
        fetch_and_unpack([str(_put(tmp_path, b"plain bytes" * 100))], "", tmp_path / "out", retries=0)
    assert not (tmp_path / "out").exists()
