"""Archives of the folder source (`data.folder.url`): fetched like every raw file, unpacked safely and atomically.

The archive is fetched with `fetch_from_mirrors` (resume, retries, mirrors, size and
SHA-256) beside the unpack folder, unpacked into a staging folder beside it and renamed
into place only once complete (`pipeline.io.atomic_dir`): an interrupted unpack leaves
no half-filled folder, and a staging folder left by `kill -9` is removed by the next run.
The complete folder carries `.unpacked.json` (the archive's SHA-256 and member count), so a
later run keeps it instead of fetching again; the fetched archive itself is then deleted
(a 5 GB copy of what is already on disk).

Every member must land inside the unpack folder: an absolute name, a `..` component, a
link (symbolic or hard) whose target is absolute or contains `..`, or a device file fails
the whole unpack before the folder exists. Forbidding `..` in link targets outright (not
only targets that resolve outside) is what makes the check safe against chains of links
that each look harmless; datasets have no use for such links.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.data.fetch import fetch_from_mirrors
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json_atomic

log = logging.getLogger(__name__)

MARKER = ".unpacked.json"
ARCHIVE_SUFFIX = ".archive"  # the fetched archive sits beside the unpack folder: <unpack_dir>.archive


def _unsafe(name: str) -> bool:
    """An absolute path (POSIX or Windows) or one with a `..` component, in either separator."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) is not None or ".." in norm.split("/")


def _refuse(archive: Path, member: str, why: str) -> PipelineError:
    return PipelineError(
        f"{archive}: member {member!r} {why}; refusing to unpack an archive that writes outside "
        "data.folder.unpack_dir (get the archive from its original source)"
    )


def _check(archive: Path, name: str, link: str | None) -> None:
    if _unsafe(name):
        raise _refuse(archive, name, "has an absolute path or '..'")
    if link is not None and _unsafe(link):
        raise _refuse(archive, name, f"is a link to {link!r}, which is absolute or climbs with '..'")


def _zip_link(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The target of a symbolic-link member (Unix mode in the upper 16 bits), else None."""
    return zf.read(info).decode("utf-8") if stat.S_ISLNK(info.external_attr >> 16) else None


def _unpack_zip(archive: Path, dest: Path) -> int:
    """Unpacks a zip into `dest` (all members checked first); returns the member count."""
    try:
        return _extract_zip(archive, dest)
    except zipfile.BadZipFile as e:  # e.g. a member's CRC does not match
        raise PipelineError(f"{archive}: a corrupt zip archive ({e}); delete it and run download again") from None


def _extract_zip(archive: Path, dest: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        links = {info.filename: _zip_link(zf, info) for info in infos}
        for info in infos:
            _check(archive, info.filename, links[info.filename])
        need, free = sum(i.file_size for i in infos), shutil.disk_usage(dest).free
        if need > free:
            raise PipelineError(f"{archive}: unpacking needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free at {dest}")
        for info in tqdm(infos, desc=f"unpack {archive.name}", unit="file"):
            target = dest / PurePosixPath(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif links[info.filename] is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        # Links last: no file above was written through a link the archive made.
        for name, link in links.items():
            if link is not None:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, dest / name)
        return len(infos)


def _unpack_tar(archive: Path, dest: Path) -> int:
    """Unpacks a tar (any compression tarfile reads) into `dest`; returns the member count."""
    if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4
        raise PipelineError(f"{archive}: unpacking a tar safely needs Python >= 3.11.4 (tarfile's data filter)")
    count = 0

    def checked(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        nonlocal count
        _check(archive, member.name, member.linkname if member.issym() or member.islnk() else None)
        count += 1
        return tarfile.data_filter(member, path)  # devices, fifos, odd permissions

    try:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter=checked)
    except tarfile.FilterError as e:
        raise _refuse(archive, e.tarinfo.name, f"is refused by tarfile's data filter ({e})") from None
    except (tarfile.TarError, EOFError) as e:
        raise PipelineError(f"{archive}: not a complete tar archive ({e}); delete it and run download again") from None
    return count


def _kept(unpack_dir: Path, sha256: str) -> bool:
    """Whether `unpack_dir` already holds this archive, unpacked; refuses to replace a folder it did not make."""
    marker = unpack_dir / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text()).get("sha256", "")
        if not sha256 or recorded == sha256:
            log.info("%s holds the archive already unpacked (%s); keeping it", unpack_dir, recorded or "unpinned")
            return True
        log.warning("%s was unpacked from another archive (sha256 %s); replacing it", unpack_dir, recorded)
        return False
    if unpack_dir.exists() and any(unpack_dir.iterdir()):
        raise PipelineError(
            f"{unpack_dir} exists but was not unpacked by the download stage (no {MARKER}); it may be your own "
            "data: move it away, or set data.folder.url: '' to use the files as they are"
        )
    return False


def fetch_and_unpack(urls: Sequence[str], sha256: str, unpack_dir: Path, retries: int) -> Path:
    """Puts the archive at `urls` (mirrors) unpacked at `unpack_dir`, unless it is there already.

    Args:
        urls: mirrors of the archive, tried in order (see `fetch_from_mirrors`).
        sha256: its SHA-256 ("" = don't verify; an unpacked folder is then kept as it is).
        unpack_dir: the folder to create; replaced only by a complete unpack.
        retries: transient failures retried per mirror.

    Returns:
        `unpack_dir`.

    Raises:
        PipelineError: the download failed, the archive is neither zip nor tar, a member
            would land outside `unpack_dir`, or `unpack_dir` holds files it did not unpack.
    """
    sha256 = sha256.lower()
    if _kept(unpack_dir, sha256):
        return unpack_dir
    archive = unpack_dir.with_name(unpack_dir.name + ARCHIVE_SUFFIX)
    fetch_from_mirrors(urls, archive, sha256=sha256, retries=retries)
    if zipfile.is_zipfile(archive):
        unpack = _unpack_zip
    elif tarfile.is_tarfile(archive):
        unpack = _unpack_tar
    else:
        raise PipelineError(f"{archive}: neither a zip nor a tar archive; check data.folder.url")
    with atomic_dir(unpack_dir) as tmp:
        n = unpack(archive, tmp)
        write_json_atomic(tmp / MARKER, {"sha256": sha256, "members": n})  # last: its presence means complete
    archive.unlink()  # the files are unpacked; the fetched copy (or link) would only double the disk used
    log.info("unpacked %d members into %s; removed %s", n, unpack_dir, archive)
    return unpack_dir
