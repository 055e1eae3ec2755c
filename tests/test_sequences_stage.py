"""The sequences stage: synthetic, TUM's download from a local mirror, folders on disk, and switched off."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest

from pipeline.config import Params, ParamsError, params_from_dict
from pipeline.errors import PipelineError
from pipeline.sequences.calibration import FREIBURG
from pipeline.sequences.layout import list_sequences, read_sequence
from pipeline.sequences.sequences import NOTE, run
from tests.conftest import shrunk_raw
from tests.http_server import LocalHTTPServer
from tests.tum_fixtures import SIZE, make_tum, tgz_of

LAYOUT = {"rgb", "depth", "rgb.txt", "depth.txt", "groundtruth.txt", "calibration.txt"}


def _with(params: Params, **changes) -> Params:
    tum = changes.pop("tum", {})
    seq = dataclasses.replace(params.sequences, **changes, tum=dataclasses.replace(params.sequences.tum, **tum))
    return dataclasses.replace(params, sequences=seq)


def test_synthetic_source_writes_n_sequences_in_the_tum_layout(tmp_path: Path, params: Params) -> None:
    out = run(params, tmp_path)
    folders = list_sequences(tmp_path / params.paths.sequences)
    assert [f.name for f in folders] == out["names"] and len(folders) == params.sequences.synthetic.n == 2
    for folder in folders:
        assert {p.name for p in folder.iterdir()} >= LAYOUT
        seq = read_sequence(folder)
        assert len(seq.frames) == out["frames"][folder.name] == params.sequences.synthetic.frames - 1
        assert (seq.intrinsics.width, seq.intrinsics.height) == (64, 48)
    manifest = json.loads((tmp_path / params.paths.sequences / "sequences.json").read_text())
    assert manifest["frames"] == out["frames"] and manifest["sequences"]["synthetic"]["n"] == 2


def _tum_server(tmp_path: Path) -> tuple[dict[str, bytes], list]:
    src = tmp_path / "tum_src"
    fixtures = [make_tum(src, "rgbd_dataset_freiburg1_desk"), make_tum(src, "rgbd_dataset_freiburg2_xyz", n=6)]
    # Served where TUM's host keeps them: /freiburg1/rgbd_dataset_freiburg1_desk.tgz
    return {f"/{f.folder.name.split('_')[2]}/{f.folder.name}.tgz": tgz_of(f.folder) for f in fixtures}, fixtures


def test_tum_source_fetches_from_the_first_mirror_that_answers_then_never_again(tmp_path: Path, params: Params) -> None:
    files, fixtures = _tum_server(tmp_path)
    with LocalHTTPServer(files) as srv:
        tum = {"names": ["freiburg1_desk", "freiburg2_xyz"], "sha256": ["", ""], "retries": 0}
        p = _with(params, source="tum", tum={**tum, "mirrors": [srv.url("/gone"), srv.base]})
        out = run(p, tmp_path / "proj")
        assert out["names"] == ["rgbd_dataset_freiburg1_desk", "rgbd_dataset_freiburg2_xyz"]
        assert out["frames"] == {"rgbd_dataset_freiburg1_desk": 9, "rgbd_dataset_freiburg2_xyz": 5}
        root = tmp_path / "proj" / params.paths.sequences
        desk = read_sequence(root / "rgbd_dataset_freiburg1_desk")
        # calibration.txt written from TUM's freiburg1 values, at the images' size: the folder is self-contained.
        assert desk.intrinsics == FREIBURG["freiburg1"].scaled(SIZE[1], SIZE[0])
        assert (root / "rgbd_dataset_freiburg1_desk" / "accelerometer.txt").is_file()
        assert read_sequence(root / "rgbd_dataset_freiburg2_xyz").intrinsics.fx == pytest.approx(520.9 * SIZE[1] / 640)
        fetched = [r.target for r in srv.requests if r.status == 200]
        assert sorted(fetched) == sorted(files)
        n = len(srv.requests)
        run(p, tmp_path / "proj")  # unpacked once into download_dir: nothing fetched again
        assert len(srv.requests) == n
        assert len(read_sequence(root / "rgbd_dataset_freiburg1_desk").frames) == 9


def test_a_pinned_sha256_that_does_not_match_fails_and_keeps_the_output(tmp_path: Path, params: Params) -> None:
    run(params, tmp_path)  # a good synthetic output first
    files, _ = _tum_server(tmp_path)
    before = sorted(p.name for p in (tmp_path / params.paths.sequences).iterdir())
    with LocalHTTPServer(files) as srv:
        wrong = hashlib.sha256(b"not it").hexdigest()
        tum = {"names": ["freiburg1_desk"], "sha256": [wrong], "retries": 0, "mirrors": [srv.base]}
        with pytest.raises(PipelineError, match="SHA-256"):
            run(_with(params, source="tum", tum=tum), tmp_path)
    assert sorted(p.name for p in (tmp_path / params.paths.sequences).iterdir()) == before


def test_disabled_writes_only_the_note_and_downloads_nothing(tmp_path: Path, params: Params) -> None:
    files, _ = _tum_server(tmp_path)
    with LocalHTTPServer(files) as srv:
        p = _with(params, enabled=False, source="tum", tum={"mirrors": [srv.base]})
        assert run(p, tmp_path)["names"] == []
        assert srv.requests == []
    out = tmp_path / params.paths.sequences
    assert [f.name for f in out.iterdir()] == [NOTE]
    assert "sequences.enabled is false" in (out / NOTE).read_text()
    assert not (tmp_path / params.sequences.tum.download_dir).exists()
    assert list_sequences(out) == []


def test_folder_source_links_sequences_on_disk_and_refuses_an_empty_or_broken_one(
    tmp_path: Path, params: Params
) -> None:
    p = _with(params, source="folder", folder_root=Path("mine"))
    with pytest.raises(PipelineError, match="mine: holds no sequence folder"):
        run(p, tmp_path)
    fx = make_tum(tmp_path / "mine", "rgbd_dataset_freiburg3_office")
    assert run(p, tmp_path)["frames"] == {"rgbd_dataset_freiburg3_office": 9}
    out = tmp_path / params.paths.sequences / "rgbd_dataset_freiburg3_office"
    assert read_sequence(out).intrinsics == FREIBURG["freiburg3"].scaled(SIZE[1], SIZE[0])
    assert not (fx.folder / "calibration.txt").exists()  # the source is never modified
    (fx.folder / "groundtruth.txt").write_text("# nothing\n")
    with pytest.raises(PipelineError, match="groundtruth.txt: holds no poses"):
        run(p, tmp_path)
    assert read_sequence(out).frames  # the good output of the last run is still there


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"source": "kitti"}, "sequences.source"),
        ({"tolerance_s": 0}, "sequences.tolerance_s"),
        ({"synthetic": {"frames": 1}}, "sequences.synthetic.frames"),
        ({"tum": {"names": ["desk"]}}, "sequences.tum.names"),
        ({"tum": {"sha256": [""]}}, "sequences.tum.sha256"),  # two names, one checksum
        ({"tum": {"mirrors": []}}, "sequences.tum.mirrors"),
    ],
)
def test_a_bad_sequences_param_names_its_key(change: dict, key: str) -> None:
    raw = shrunk_raw()
    for name, value in change.items():
        if isinstance(value, dict):
            raw["sequences"][name] = {**raw["sequences"][name], **value}
        else:
            raw["sequences"][name] = value
    with pytest.raises(ParamsError, match=rf"'{re.escape(key)}' is .*; allowed: "):
        params_from_dict(raw)


def test_unreachable_mirrors_say_how_to_run_offline(tmp_path: Path, params: Params) -> None:
    files, _ = _tum_server(tmp_path)
    with LocalHTTPServer(files) as srv:
        tum = {"names": ["freiburg1_desk"], "sha256": [""], "retries": 0, "mirrors": [srv.url("/gone")]}
        with pytest.raises(PipelineError) as err:
            run(_with(params, source="tum", tum=tum), tmp_path)
    message = str(err.value)
    assert "\n" not in message and srv.url("/gone") in message  # the mirror tried, on one line
    assert "sequences.source=synthetic" in message and "sequences.enabled=false" in message
    assert not (tmp_path / params.paths.sequences).exists()  # nothing half-written
