"""Fetching the raw data files: resumable, retried, verified, and never half-written.

`fetch` accepts `http(s)://` URLs, `file://` URLs and plain local paths. Downloads
stream into `<dest>.part` beside the output (kept across runs: DVC deletes only the
declared outs, so an interrupted 3 GB download resumes with an HTTP Range request),
are hashed while streaming, and are renamed into place only once their size and
SHA-256 match. A local file is hard-linked (or copied) instead of downloaded.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from pipeline.data.http_range import CHUNK_BYTES, PartFile, PermanentError, TransientError, transfer
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, sha256_file

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
MAX_BACKOFF_S = 60.0  # the doubling stops here: a long outage is retried once a minute
DEMO_HINT = "or run `make demo` for the offline synthetic data"


def fetch(
    url: str,
    dest: str | Path,
    sha256: str = "",
    size: int = 0,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> Path:
    """Puts the file at `url` at `dest`, verified; skips the work if `dest` already matches.

    Args:
        url: `http(s)://...`, `file://...` or a local path (never modified or deleted).
        dest: output path; nothing unverified is ever written there.
        sha256: expected SHA-256 hex digest; "" = don't verify (a warning logs the observed one).
        size: expected size in bytes; 0 = don't check.
        retries: consecutive retries after transient failures (connection errors, timeouts,
            5xx, truncated transfers) that made no progress; the wait doubles from
            `backoff_s`. A failed attempt that did add bytes starts the count afresh, so a
            flaky link still finishes a large file. 0 = a single attempt.
        backoff_s: first wait between attempts, in seconds.
        timeout_s: socket timeout for connecting and for each read.

    Returns:
        `dest` as a Path.

    Raises:
        PipelineError: unreachable host, HTTP 4xx, checksum or size mismatch, retries
            exhausted, or a local file error such as a full disk.
    """
    return fetch_from_mirrors([url], dest, sha256, size, retries, backoff_s=backoff_s, timeout_s=timeout_s)


def _fetch_one(url: str, dest: Path, sha256: str, size: int, retries: int, backoff_s: float, timeout_s: float) -> None:
    """One location to `dest`, verified (the caller has checked that `dest` is not already good)."""
    if not url:
        raise PipelineError(f"download: empty URL in the mirror list for {dest}; remove it from params.yaml")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = _local_source(url)
    try:
        if src is None:
            _fetch_http(url, dest, sha256, size, retries, backoff_s, timeout_s)
        else:
            _fetch_local(src, dest, url, sha256, size)
    except OSError as e:
        what = "no space left on device" if e.errno == errno.ENOSPC else f"{e.strerror or e}"
        raise _error(
            url, sha256, size, f"{what} while writing {e.filename or dest}", "free some space and run it again"
        ) from None


def fetch_from_mirrors(
    urls: Sequence[str],
    dest: str | Path,
    sha256: str = "",
    size: int = 0,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> Path:
    """`fetch` from the first mirror that delivers the verified file; the others are tried in order.

    Every mirror is held to the same size and SHA-256, so any mirror is safe. A partial
    download left by a failing mirror is resumed from the next one (same bytes, or the
    checksum throws them away). The log says which mirror failed and why, and which
    one was used.

    Args:
        urls: mirrors, in the order to try them (see `fetch` for the forms a URL takes).
        dest: output path; nothing unverified is ever written there.
        sha256: expected SHA-256 hex digest ("" = don't verify).
        size: expected size in bytes (0 = don't check).
        retries: `fetch`'s retries, per mirror.
        backoff_s: first wait between attempts, in seconds.
        timeout_s: socket timeout for connecting and for each read.

    Raises:
        PipelineError: every mirror failed; the message lists each one's reason (for
            a single location, its own error as `fetch` raises it).
    """
    dest, sha256, urls = Path(dest), sha256.lower(), list(urls)
    if not any(urls):
        raise PipelineError(f"download: no URL given for {dest} (params.yaml data.url / data.splits_url); {DEMO_HINT}")
    # Checked once, not per mirror: a mismatching 3 GB file would be hashed again for each.
    if _already_good(dest, sha256, size):
        log.info("%s is already present and verified; skipping the download", dest)
        return dest
    failures: list[str] = []
    for i, url in enumerate(urls, 1):
        try:
            _fetch_one(url, dest, sha256, size, retries, backoff_s, timeout_s)
        except PipelineError as e:
            if len(urls) == 1:
                raise
            reason = e.reason if isinstance(e, FetchError) else str(e)
            log.warning("download: mirror %d of %d (%s) failed: %s", i, len(urls), _shown(url), reason)
            failures.append(f"[{i}] {_shown(url)}: {reason}")
            continue
        if len(urls) > 1:
            log.info("download: %s from mirror %d of %d (%s)", dest.name, i, len(urls), _shown(url))
        return dest
    raise PipelineError(
        f"download {dest.name}: all {len(urls)} mirrors failed: {' | '.join(failures)}; "
        f"add a mirror you can reach to params.yaml (data.url takes a list), {DEMO_HINT}"
    )


def _shown(url: str) -> str:
    """A URL as logged: without credentials (a mirror may carry a token)."""
    from pipeline.tracking.redact import redact_uri

    return redact_uri(url)


def _expected(sha256: str, size: int) -> str:
    return f"expected {f'{size} bytes' if size else 'any size'}, sha256 {sha256 or 'not pinned'}"


class FetchError(PipelineError):
    """A location that did not deliver the file; `reason` is what went wrong and what was expected."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _error(url: str, sha256: str, size: int, what: str, todo: str) -> FetchError:
    """The one-line failure message: which URL, what went wrong, what was expected, what to do."""
    reason = f"{what} ({_expected(sha256, size)})"
    return FetchError(f"download {url}: {reason}; {todo}, {DEMO_HINT}", reason)


def _mismatch(sha256: str, size: int, observed_sha: str, observed_size: int) -> str:
    """Why a file is not the expected one ("" if it is)."""
    if size and observed_size != size:
        return f"size is {observed_size} bytes"
    if sha256 and observed_sha != sha256:
        return f"SHA-256 is {observed_sha}"
    return ""


def _warn_unpinned(path: Path, sha256: str, observed_sha: str) -> None:
    if not sha256:
        log.warning("%s is not verified (no sha256 in params.yaml); its SHA-256 is %s", path, observed_sha)


def _already_good(dest: Path, sha256: str, size: int) -> bool:
    """Whether `dest` exists and matches; a mismatching one stays until its replacement verifies."""
    if not dest.is_file():
        return False
    if size and dest.stat().st_size != size:  # cheap check first: no need to hash 3 GB
        problem = f"size is {dest.stat().st_size} bytes"
    else:
        observed = sha256_file(dest)
        problem = _mismatch(sha256, size, observed, dest.stat().st_size)
        if not problem:
            _warn_unpinned(dest, sha256, observed)
            return True
    log.warning("%s exists but its %s (%s); fetching it again", dest, problem, _expected(sha256, size))
    return False


def _local_source(url: str) -> Path | None:
    """The local path behind `url`, or None for http(s)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive ("C:\\...")
        raise PipelineError(f"download {url}: unsupported URL scheme '{scheme}'; use http(s)://, file:// or a path")
    return Path(url).expanduser()


def _fetch_local(src: Path, dest: Path, url: str, sha256: str, size: int) -> None:
    """Hard-links (same filesystem) or copies a local file to `dest`, verifying it on the way."""
    if not src.is_file():
        raise _error(url, sha256, size, f"no such file {src}", "point data.url at an existing file")
    with atomic_path(dest) as tmp:
        tmp.unlink(missing_ok=True)  # a stale temp file might be a link to src: never write into it
        try:
            # No copy of 3 GB, and the source is never opened for writing. Caveat: sharing the
            # inode means a later `chmod` of the output (DVC makes its cache files read-only)
            # also applies to the source; its contents are never touched.
            os.link(src, tmp)
            how, observed = "hard-linked", sha256_file(tmp)
        except OSError:  # another filesystem, or links not permitted: copy instead
            how, observed = "copied", _copy_hashing(src, tmp)
        problem = _mismatch(sha256, size, observed, tmp.stat().st_size)
        if problem:  # raising here removes tmp (a link or copy); src is untouched
            raise _error(url, sha256, size, f"local file {problem}", "point data.url at the right file")
    _warn_unpinned(dest, sha256, observed)
    log.info("%s %s -> %s", how, src, dest)


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copies src to dst with a progress bar; returns the SHA-256 of the bytes copied."""
    h = hashlib.sha256()
    bar = tqdm(total=src.stat().st_size, desc=dst.name, unit="B", unit_scale=True, unit_divisor=1024)
    with bar, open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(chunk)
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _fetch_http(url: str, dest: Path, sha256: str, size: int, retries: int, backoff_s: float, timeout_s: float) -> None:
    """Transfer attempts with exponential backoff, then verification and the atomic rename."""
    opener = urllib.request.build_opener()  # built now so it reads http(s)_proxy/no_proxy now
    part = PartFile(dest.with_name(dest.name + PART_SUFFIX))
    failures = 0
    while True:
        before = part.length
        try:
            transfer(opener, url, part, size, timeout_s)
            break
        except PermanentError as e:
            todo = "check data.url (or download the file by hand and point data.url at it)"
            raise _error(url, sha256, size, str(e), todo) from None
        except TransientError as e:
            # Consecutive failures without progress; one that moved the file forward counts as the first.
            failures = 1 if part.length > before else failures + 1
            if failures > retries:
                todo = "check the network and proxy settings (http_proxy/https_proxy/no_proxy) and run it again"
                raise _error(url, sha256, size, f"{e}; gave up after {retries} retries", todo) from None
            delay = min(backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S)
            log.warning("%s: %s; retry %d/%d in %.1f s", url, e, failures, retries, delay)
            time.sleep(delay)
    _finish(part, dest, url, sha256, size)


def _finish(part: PartFile, dest: Path, url: str, sha256: str, size: int) -> None:
    """Verifies the complete part file and renames it onto `dest`, or deletes it."""
    observed = part.hexdigest()
    problem = _mismatch(sha256, size, observed, part.length)
    if problem:
        part.path.unlink(missing_ok=True)
        raise _error(
            url,
            sha256,
            size,
            f"downloaded file's {problem}",
            f"deleted {part.path} so the next run starts afresh; check data.url, data.sha256 and data.size",
        )
    with open(part.path, "rb+") as f:
        os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the output
    os.replace(part.path, dest)
    _warn_unpinned(dest, sha256, observed)
    log.info("downloaded %s -> %s (%d bytes)", url, dest, part.length)
