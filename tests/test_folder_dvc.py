"""`dvc repro` with `data.source: folder`: an archive from a mirror, and DVC's outputs without the NYU files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from tests.e2e_helpers import clone_project, run
from tests.folder_fixtures import folder_params, make_bts, zip_of
from tests.http_server import LocalHTTPServer


@pytest.mark.slow
def test_dvc_repro_fetches_unpacks_and_preprocesses_a_folder_set(tmp_path: Path) -> None:
    repo = clone_project(tmp_path / "proj")
    src = make_bts(tmp_path / "src" / "sync")
    blob = zip_of(src.root)
    (repo / "data").mkdir(exist_ok=True)
    for lst in (src.train_list, src.test_list):  # the lists, downloaded by hand as BTS's are
        shutil.copy(lst, repo / "data" / lst.name)
    with LocalHTTPServer({"/sync.zip": blob}, lifetime_s=300) as srv:
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["data"]["source"] = "folder"
        raw["data"]["folder"] = folder_params(src, tmp_path / "src", root="data/raw/bts/sync",
                                              unpack_dir="data/raw/bts", train_list=f"data/{src.train_list.name}",
                                              test_list=f"data/{src.test_list.name}", url=srv.url("/sync.zip"),
                                              sha256=hashlib.sha256(blob).hexdigest())  # fmt: skip
        raw["preprocess"].update(height=32, width=48)
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        out = run(["dvc", "repro", "preprocess"], repo).stdout
        assert "Running stage 'download'" in out and "Running stage 'preprocess'" in out
        # DVC needs every declared output: test_from list needs no NYU file, so placeholders stand in.
        assert (repo / "data/raw/nyu_depth_v2_labeled.mat").read_text().startswith("Not NYUDv2")
        for name in ("train.h5", "val.h5", "test.h5", "summary.json"):
            assert (repo / "data/processed" / name).stat().st_size > 0
        assert [r.target for r in srv.requests] == ["/sync.zip"]
        assert "Running stage" not in run(["dvc", "repro", "preprocess"], repo).stdout  # up to date
        assert [r.target for r in srv.requests] == ["/sync.zip"]  # and nothing fetched again
