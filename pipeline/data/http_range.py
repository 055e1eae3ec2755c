"""One HTTP(S) transfer attempt into a `.part` file, resuming with Range where the server allows.

The retry loop lives in `pipeline.data.fetch`; this module does a single attempt and
says how it failed: `TransientError` (connection errors, timeouts, 5xx, a transfer cut
short: worth retrying) or `PermanentError` (404, 403, a server that disagrees about the
size: retrying cannot help). A raw `OSError` escaping `transfer` is always a local file
error (e.g. a full disk), because every network call here converts its own errors.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # 1 MiB: few syscalls, and a small loss when a transfer is cut
# 408 (request timeout) and 429 (too many requests) are the server asking us to come back later.
_RETRY_STATUS = {408, 429}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class TransientError(Exception):
    """An attempt failed in a way that a later attempt may not."""


class PermanentError(Exception):
    """An attempt failed in a way that retrying cannot fix."""


@dataclass
class PartFile:
    """The `.part` file being filled, with a running SHA-256 of its bytes.

    The hash is kept across attempts, so a resumed transfer hashes only the new bytes;
    the file is re-read only when it differs from what was hashed (an earlier run).
    """

    path: Path
    length: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)

    def sync(self) -> None:
        """Makes `length` and `hasher` describe the file on disk, re-hashing it if needed."""
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk == self.length:
            return
        log.info("hashing the %d bytes already in %s to resume", on_disk, self.path)
        self.hasher, self.length = hashlib.sha256(), 0
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                self.hasher.update(chunk)
                self.length += len(chunk)

    def restart(self) -> None:
        """Empties the part file: the next attempt starts from byte 0."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.hasher, self.length = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        """The SHA-256 of everything written so far, as 64 hex digits."""
        return self.hasher.hexdigest()


def transfer(opener: urllib.request.OpenerDirector, url: str, part: PartFile, size: int, timeout_s: float) -> None:
    """Appends the rest of `url` to `part` (from byte 0 if the server cannot resume).

    Args:
        opener: urllib opener (built per download, so it reads the *_proxy variables now).
        url: http(s) URL.
        part: the part file; `part.length` bytes of it are kept if the server supports Range.
        size: expected total bytes, 0 if unknown.
        timeout_s: socket timeout for connecting and for each read.

    Raises:
        TransientError, PermanentError: see the module docstring.
        OSError: writing the part file failed.
    """
    part.sync()
    if size and part.length > size:
        log.warning("%s is larger than the expected %d bytes; starting again", part.path, size)
        part.restart()
    if size and part.length == size:
        return  # complete already; the caller verifies it
    offset = part.length
    req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        resp = opener.open(req, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        with e:
            _raise_for_status(e, part, offset)
        return  # 416 on a part that is already complete
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
        raise TransientError(f"cannot connect: {getattr(e, 'reason', e)}") from e
    with resp:
        total = _start(resp, part, offset, size)
        _stream(resp, part, total)


def _raise_for_status(e: urllib.error.HTTPError, part: PartFile, offset: int) -> None:
    """Turns an HTTP error status into the right exception; returns only if the part is complete."""
    if e.code == 416 and offset:
        # The server cannot serve bytes from `offset`: either the part already holds the whole
        # file, or it is longer than the file (stale or corrupt). Its size tells which.
        match = _UNSATISFIED_RANGE.match(e.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return
        part.restart()
        raise TransientError(f"server refused to resume at byte {offset} (HTTP 416); {part.path} emptied")
    if e.code >= 500 or e.code in _RETRY_STATUS:
        raise TransientError(f"HTTP {e.code} {e.reason}")
    raise PermanentError(f"HTTP {e.code} {e.reason}")


def _start(resp: http.client.HTTPResponse, part: PartFile, offset: int, size: int) -> int | None:
    """Checks the response against the resume offset; returns the file's total size if known."""
    if resp.status == 206:
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            part.restart()
            raise TransientError(f"bad Content-Range {resp.headers.get('Content-Range')!r} for a resume at {offset}")
        # "bytes a-b/*": total unknown, but this response must still reach byte b.
        total: int | None = int(match.group(2)) + 1 if match.group(3) == "*" else int(match.group(3))
    else:
        if offset:
            # Range ignored: the server sends the whole file, so drop what we had (hash too).
            log.warning("server does not support resuming (HTTP %d to a Range request); restarting", resp.status)
        part.restart()
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if size and total is not None and total != size:
        part.restart()
        raise PermanentError(f"the server says the file is {total} bytes, not the expected {size}")
    return total


def _stream(resp: http.client.HTTPResponse, part: PartFile, total: int | None) -> None:
    """Copies the body to the end of the part file, hashing each chunk as it is written."""
    start = part.length
    bar = tqdm(
        total=total, initial=start, desc=part.path.name, unit="B", unit_scale=True, unit_divisor=1024, mininterval=0.5
    )
    with bar, open(part.path, "ab") as f:
        while True:
            try:
                chunk = resp.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as e:
                raise TransientError(f"connection lost after {part.length} bytes: {e}") from e
            if not chunk:
                break
            f.write(chunk)  # an OSError here (e.g. ENOSPC) propagates: a local problem, not a network one
            part.hasher.update(chunk)
            part.length += len(chunk)
            bar.update(len(chunk))
    # http.client returns a short body without complaint when the connection drops early.
    if total is not None and part.length < total:
        raise TransientError(f"transfer cut short at {part.length} of {total} bytes")
