"""The downloader against a local HTTP server (127.0.0.1) and tmp_path files only."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

import pipeline.data.http_range as http_range
from pipeline.config import load_params, params_from_dict
from pipeline.data.fetch import fetch, fetch_from_mirrors
from pipeline.errors import PipelineError
from tests.conftest import repo_raw, write_params
from tests.http_server import LocalHTTPServer, Switches

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"backoff_s": 0.001, "timeout_s": 5.0}  # tiny backoff: retries don't sleep


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables from the machine running the tests must not route 127.0.0.1 elsewhere."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def serve(**switches: object) -> LocalHTTPServer:
    return LocalHTTPServer({"/labeled.mat": PAYLOAD}, Switches(**switches))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download(tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "labeled.mat"
    with serve() as srv:
        out = fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), **FAST)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "raw" / "labeled.mat.part").exists()
    assert [(r.range, r.status) for r in srv.requests] == [(None, 200)]


def test_resume_sends_only_the_remainder(tmp_path: Path) -> None:
    dest, k = tmp_path / "labeled.mat", 123_456
    (tmp_path / "labeled.mat.part").write_bytes(PAYLOAD[:k])
    with serve() as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    [req] = srv.requests
    assert (req.range, req.status, req.body_bytes) == (f"bytes={k}-", 206, len(PAYLOAD) - k)


def test_server_without_range_restarts_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "labeled.mat"
    # Wrong bytes in the part: appending to them instead of restarting would fail the checksum.
    (tmp_path / "labeled.mat.part").write_bytes(b"x" * 1000)
    with serve(range_supported=False) as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    [req] = srv.requests
    assert (req.range, req.status, req.body_bytes) == ("bytes=1000-", 200, len(PAYLOAD))


def test_5xx_is_retried(tmp_path: Path) -> None:
    dest = tmp_path / "labeled.mat"
    with serve(fail_5xx=2) as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, retries=2, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r.status for r in srv.requests] == [503, 503, 200]


def test_truncated_transfer_resumes(tmp_path: Path) -> None:
    dest, k = tmp_path / "labeled.mat", 100_000
    with serve(drop_after=k, drop_times=2) as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), retries=1, **FAST)
    assert dest.read_bytes() == PAYLOAD
    # Each cut attempt made progress, so retries=1 suffices for two cuts.
    assert [r.range for r in srv.requests] == [None, f"bytes={k}-", f"bytes={2 * k}-"]
    assert sum(r.body_bytes for r in srv.requests) == len(PAYLOAD)


def test_truncation_without_progress_exhausts_retries(tmp_path: Path) -> None:
    dest = tmp_path / "labeled.mat"
    with serve(drop_after=0, drop_times=100) as srv, pytest.raises(PipelineError) as info:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), retries=2, **FAST)
    msg = str(info.value)
    assert "cut short" in msg and "gave up after 2 retries" in msg and srv.url("/labeled.mat") in msg
    assert SHA in msg and str(len(PAYLOAD)) in msg and "make demo" in msg
    assert len(srv.requests) == 3 and not dest.exists()


@pytest.mark.parametrize("retries", [0, 3])
def test_404_fails_at_once_with_a_clear_message(tmp_path: Path, retries: int) -> None:
    dest = tmp_path / "labeled.mat"
    with serve() as srv, pytest.raises(PipelineError) as info:
        fetch(srv.url("/moved.mat"), dest, sha256=SHA, retries=retries, **FAST)
    msg = str(info.value)
    assert "HTTP 404" in msg and srv.url("/moved.mat") in msg and "data.url" in msg and "make demo" in msg
    assert len(srv.requests) == 1 and not dest.exists()


def test_unreachable_host(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/labeled.mat"
    with pytest.raises(PipelineError) as info:
        fetch(url, tmp_path / "labeled.mat", sha256=SHA, retries=1, **FAST)
    msg = str(info.value)
    assert "cannot connect" in msg and url in msg and "proxy" in msg and "make demo" in msg


def test_checksum_mismatch_deletes_the_part(tmp_path: Path) -> None:
    dest, wrong = tmp_path / "labeled.mat", "0" * 64
    with serve() as srv, pytest.raises(PipelineError) as info:
        fetch(srv.url("/labeled.mat"), dest, sha256=wrong, **FAST)
    msg = str(info.value)
    assert f"SHA-256 is {SHA}" in msg and wrong in msg and "deleted" in msg and "make demo" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_server_size_disagreeing_with_params_is_permanent(tmp_path: Path) -> None:
    with serve() as srv, pytest.raises(PipelineError, match=f"not the expected {len(PAYLOAD) + 1}"):
        fetch(srv.url("/labeled.mat"), tmp_path / "labeled.mat", size=len(PAYLOAD) + 1, **FAST)
    assert len(srv.requests) == 1 and not (tmp_path / "labeled.mat").exists()


def test_empty_sha_warns_with_the_observed_hash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "labeled.mat"
    with serve() as srv, caplog.at_level(logging.WARNING):
        fetch(srv.url("/labeled.mat"), dest, sha256="", **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert any(SHA in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_complete_part_answered_416_is_verified_and_used(tmp_path: Path) -> None:
    # size unknown (0): the downloader must ask, and the server says the part is whole.
    dest = tmp_path / "labeled.mat"
    (tmp_path / "labeled.mat.part").write_bytes(PAYLOAD)
    with serve() as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [(r.range, r.status) for r in srv.requests] == [(f"bytes={len(PAYLOAD)}-", 416)]


def test_oversized_part_answered_416_restarts(tmp_path: Path) -> None:
    dest = tmp_path / "labeled.mat"
    (tmp_path / "labeled.mat.part").write_bytes(PAYLOAD + b"junk")
    with serve() as srv:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert [r.status for r in srv.requests] == [416, 200]


@pytest.mark.parametrize("form", ["file_url", "plain_path"])
@pytest.mark.parametrize("can_link", [True, False])
def test_local_source_is_linked_or_copied_never_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str, can_link: bool
) -> None:
    src = tmp_path / "mine" / "nyu.mat"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    if not can_link:
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    url = src.as_uri() if form == "file_url" else str(src)
    dest = fetch(url, tmp_path / "raw" / "labeled.mat", sha256=SHA, size=len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD and src.read_bytes() == PAYLOAD
    assert os.path.samefile(src, dest) == can_link
    assert sorted(p.name for p in dest.parent.iterdir()) == ["labeled.mat"]


def test_local_source_with_wrong_checksum_is_left_alone(tmp_path: Path) -> None:
    src = tmp_path / "nyu.mat"
    src.write_bytes(PAYLOAD)
    with pytest.raises(PipelineError, match="local file SHA-256 is"):
        fetch(str(src), tmp_path / "raw" / "labeled.mat", sha256="1" * 64, **FAST)
    assert src.read_bytes() == PAYLOAD
    assert list((tmp_path / "raw").iterdir()) == []


def test_missing_local_source(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no such file .*make demo"):
        fetch(str(tmp_path / "nope.mat"), tmp_path / "labeled.mat", **FAST)


def test_existing_good_output_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "labeled.mat"
    dest.write_bytes(PAYLOAD)
    with serve() as srv, caplog.at_level(logging.INFO):
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), **FAST)
    assert srv.requests == [] and dest.read_bytes() == PAYLOAD
    assert any("skipping" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("failure", ["404", "truncated", "checksum"])
def test_failed_download_never_touches_the_existing_output(tmp_path: Path, failure: str) -> None:
    # The file at the output is a good older file; params now pin a new one that cannot be fetched.
    dest, old = tmp_path / "labeled.mat", b"an older, complete release"
    dest.write_bytes(old)
    expected = {"404": SHA, "truncated": SHA, "checksum": "2" * 64}[failure]
    switches = {"drop_after": 10, "drop_times": 100, "range_supported": False} if failure == "truncated" else {}
    path = "/gone.mat" if failure == "404" else "/labeled.mat"
    with serve(**switches) as srv, pytest.raises(PipelineError):
        fetch(srv.url(path), dest, sha256=expected, retries=2, **FAST)
    assert dest.read_bytes() == old


def test_disk_full_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FullDisk:
        def __init__(self, path: Path, mode: str) -> None:
            self.path = path

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    monkeypatch.setattr(http_range, "open", FullDisk, raising=False)  # only the part-file writes
    dest = tmp_path / "labeled.mat"
    with serve() as srv, pytest.raises(PipelineError) as info:
        fetch(srv.url("/labeled.mat"), dest, sha256=SHA, size=len(PAYLOAD), retries=3, **FAST)
    msg = str(info.value)
    assert "no space left on device" in msg and "labeled.mat.part" in msg and srv.url("/labeled.mat") in msg
    assert "free some space" in msg and "make demo" in msg and str(len(PAYLOAD)) in msg
    assert len(srv.requests) == 1 and not dest.exists()  # a full disk is not retried


def test_http_proxy_env_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `.invalid` never resolves (RFC 2606): success means the request went through the proxy.
    url = "http://nyu-mirror.invalid/labeled.mat"
    with serve() as proxy:
        monkeypatch.setenv("http_proxy", proxy.base)
        fetch(url, tmp_path / "labeled.mat", sha256=SHA, **FAST)
    assert (tmp_path / "labeled.mat").read_bytes() == PAYLOAD
    assert [(r.target, r.host) for r in proxy.requests] == [(url, "nyu-mirror.invalid")]


def test_no_proxy_bypasses_the_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")  # a dead proxy
    with serve() as srv:
        with pytest.raises(PipelineError, match="cannot connect"):
            fetch(srv.url("/labeled.mat"), tmp_path / "a.mat", sha256=SHA, retries=0, **FAST)
        assert srv.requests == []  # the dead proxy was used, not the server
        monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
        fetch(srv.url("/labeled.mat"), tmp_path / "b.mat", sha256=SHA, retries=0, **FAST)
    assert (tmp_path / "b.mat").read_bytes() == PAYLOAD and len(srv.requests) == 1


def _write_params(root: Path, **data: object) -> None:
    raw = repo_raw()
    raw["data"].update(data)
    params_from_dict(raw)  # the file we write must be valid
    write_params(root, raw)


def test_stage_fetches_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.download import run

    splits = tmp_path / "src" / "splits.mat"
    splits.parent.mkdir()
    splits.write_bytes(b"splits")
    with LocalHTTPServer({"/labeled.mat": PAYLOAD}) as srv:
        _write_params(
            tmp_path,
            url=srv.url("/labeled.mat"),
            size=len(PAYLOAD),
            sha256=SHA,
            splits_url=splits.as_uri(),
            splits_sha256=hashlib.sha256(b"splits").hexdigest(),
        )
        out = run(load_params(tmp_path / "params.yaml"), tmp_path)
    paths = load_params(tmp_path / "params.yaml").paths.resolve(tmp_path)
    assert out == {"labeled": paths.labeled, "splits": paths.splits}
    assert paths.labeled.read_bytes() == PAYLOAD and paths.splits.read_bytes() == b"splits"


def test_stage_synthetic_source_calls_the_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.download import run

    calls = []
    fake = types.ModuleType("pipeline.synthetic.dataset")
    fake.write_synthetic_nyu = lambda *args: calls.append(args)
    monkeypatch.setitem(sys.modules, "pipeline.synthetic.dataset", fake)
    _write_params(tmp_path, source="synthetic", url="http://127.0.0.1:9/never-fetched")
    params = load_params(tmp_path / "params.yaml")
    run(params, tmp_path)
    assert calls == [(tmp_path / params.paths.labeled, tmp_path / params.paths.splits, params.data.synthetic)]


def test_stage_exits_nonzero_with_one_line_on_404(tmp_path: Path) -> None:
    with serve() as srv:
        _write_params(tmp_path, url=srv.url("/gone.mat"), splits_url=srv.url("/gone-splits.mat"))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            env.pop(name, None)
        proc = subprocess.run(
            [sys.executable, "-m", "stages.download"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "HTTP 404" in errors[0] and srv.url("/gone-splits.mat") in errors[0] and "make demo" in errors[0]
    assert not (tmp_path / "data" / "raw" / "splits.mat").exists()


# ---- mirrors ---------------------------------------------------------------------------


def test_mirrors_are_tried_in_order_and_the_log_says_why_each_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/labeled.mat"
    wrong = LocalHTTPServer({"/labeled.mat": PAYLOAD[::-1]})  # another file: fails the checksum
    with serve() as good, wrong:
        urls = [good.url("/missing.mat"), dead, wrong.url("/labeled.mat"), good.url("/labeled.mat")]
        with caplog.at_level(logging.INFO, logger="pipeline.data.fetch"):
            fetch_from_mirrors(urls, tmp_path / "labeled.mat", sha256=SHA, size=len(PAYLOAD), retries=0, **FAST)
    assert (tmp_path / "labeled.mat").read_bytes() == PAYLOAD
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "mirror 1 of 4" in warnings[0] and "404" in warnings[0]
    assert "mirror 2 of 4" in warnings[1] and "cannot connect" in warnings[1]
    assert "mirror 3 of 4" in warnings[2] and "SHA-256" in warnings[2]
    assert any("from mirror 4 of 4" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_partial_download_resumes_from_the_next_mirror(tmp_path: Path) -> None:
    k = 100_000
    dest = tmp_path / "labeled.mat"
    (tmp_path / "labeled.mat.part").write_bytes(PAYLOAD[:k])  # what a mirror that died delivered
    with serve() as srv:
        fetch_from_mirrors([srv.url("/gone.mat"), srv.url("/labeled.mat")], dest, sha256=SHA, retries=0, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert srv.requests[-1].range == f"bytes={k}-"  # only the remainder came from the second mirror


def test_all_mirrors_failing_is_one_error_listing_each(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/x"
    with serve() as srv, pytest.raises(PipelineError) as e:
        fetch_from_mirrors([srv.url("/nope"), dead], tmp_path / "f.mat", sha256=SHA, retries=0, **FAST)
    msg = str(e.value)
    assert "\n" not in msg and "all 2 mirrors failed" in msg and "[1]" in msg and "404" in msg
    assert "[2]" in msg and "cannot connect" in msg and "data.url" in msg
    assert not (tmp_path / "f.mat").exists()


def test_mirror_credentials_never_reach_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with serve() as srv:
        secret_url = srv.url("/nope").replace("http://", "http://bob:s3cret@")
        with caplog.at_level(logging.INFO, logger="pipeline.data.fetch"):
            fetch_from_mirrors([secret_url, srv.url("/labeled.mat")], tmp_path / "f.mat", sha256=SHA, retries=0, **FAST)
    assert "s3cret" not in caplog.text and (tmp_path / "f.mat").read_bytes() == PAYLOAD


def test_stage_takes_a_list_of_mirrors(tmp_path: Path) -> None:
    from stages.download import run

    splits = tmp_path / "src" / "splits.mat"
    splits.parent.mkdir()
    splits.write_bytes(b"splits")
    with serve() as srv:
        _write_params(
            tmp_path,
            url=[srv.url("/dead.mat"), srv.url("/labeled.mat")],
            size=len(PAYLOAD),
            sha256=SHA,
            splits_url=[str(tmp_path / "nowhere.mat"), str(splits)],
            splits_sha256=hashlib.sha256(b"splits").hexdigest(),
        )
        run(load_params(tmp_path / "params.yaml"), tmp_path)
    paths = load_params(tmp_path / "params.yaml").paths.resolve(tmp_path)
    assert paths.labeled.read_bytes() == PAYLOAD and paths.splits.read_bytes() == b"splits"


def test_an_existing_mismatching_file_is_hashed_once_not_per_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.data.fetch as fetch_mod

    dest = tmp_path / "labeled.mat"
    dest.write_bytes(PAYLOAD[::-1])  # right size, wrong bytes: only its hash can tell
    hashed = []
    original = fetch_mod.sha256_file
    monkeypatch.setattr(fetch_mod, "sha256_file", lambda p: hashed.append(Path(p)) or original(p))
    with serve() as srv:
        urls = [srv.url("/a.mat"), srv.url("/b.mat"), srv.url("/labeled.mat")]
        fetch_from_mirrors(urls, dest, sha256=SHA, size=len(PAYLOAD), retries=0, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert hashed == [dest]
