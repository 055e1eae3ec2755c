"""Report stage: files, self-containment, content, atomicity, clean errors, MLflow hand-off.

Inputs are generated here in the documented formats (docs/ARCHITECTURE.md), so these
tests do not depend on running train/evaluate.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.metrics import HIGHER_IS_BETTER, METRIC_NAMES
from pipeline.report import figures
from pipeline.report.markup import markdown_table
from pipeline.report.published import NOT_REPRODUCED, PUBLISHED
from pipeline.report.report import build_report, log_to_mlflow
from pipeline.report.tables import MISSING, Table, fmt, headline_table, metric_label
from tests.conftest import shrunk_params
from tests.report_fixtures import fake_metrics, write_inputs

ROOT = Path(__file__).resolve().parents[1]


def make_params(source: str = "synthetic", mlflow: bool = True) -> Params:
    """The shrunk params with `data.source` set; paths stay relative (to tmp_path in tests)."""
    return shrunk_params(data={"source": source}, mlflow={"enabled": mlflow})


class _Resources(HTMLParser):
    """Collects tags and every src/href in an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def _outputs(root: Path, params: Params) -> dict[str, bytes | list[str]]:
    p = params.paths
    figs = root / p.figures_dir
    snap: dict[str, bytes | list[str]] = {"figures": sorted(f.name for f in figs.iterdir()) if figs.exists() else []}
    for rel in (p.report_md, p.report_html):
        snap[rel] = (root / rel).read_bytes() if (root / rel).exists() else b""
    for f in snap["figures"]:
        snap[f] = (figs / f).read_bytes()
    return snap


def _leftovers(root: Path, params: Params) -> list[str]:
    """Temporary files/folders (hidden names) left beside the outputs."""
    return [f.name for f in (root / params.paths.report_md).parent.iterdir() if f.name.startswith(".")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params, dict, dict]:
    root = tmp_path_factory.mktemp("report")
    params = make_params("nyudv2")
    metrics = write_inputs(root, params)
    return root, params, metrics, build_report(params, root)


def test_report_files_exist_and_are_self_contained(built):
    root, params, _, written = built
    page = written["report_html"].read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(page)
    assert "table" in parser.tags and "script" not in parser.tags and "link" not in parser.tags
    images = [u for u in parser.urls if u.startswith("data:image/png;base64,")]
    assert len(images) == 6  # curves, grid, scene types, error by depth, pose by gap, pose trajectories
    png = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    png.verify()
    assert png.format == "PNG"
    external = [u for u in parser.urls if not (u.startswith("data:") or u.startswith("#"))]
    assert external == [], f"the report loads external resources: {external}"
    assert not re.search(r"url\(\s*['\"]?https?:", page), "CSS must not load anything remote"
    assert sorted(p.name for p in written["figures"]) == sorted(f.name for f in written["figures_dir"].iterdir())
    assert _leftovers(root, params) == []


def test_markdown_links_every_figure_relatively(built):
    _, _, _, written = built
    md = written["report_md"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/{p.name}" for p in written["figures"])
    for link in links:
        assert (written["report_md"].parent / link).is_file()
        Image.open(written["report_md"].parent / link).verify()


def test_headline_table_shows_model_and_baseline_values(built):
    _, _, metrics, written = built
    md = written["report_md"].read_text(encoding="utf-8")
    for row_name, values in (("U-Net (this pipeline)", metrics), ("Constant-depth baseline", metrics["baseline"])):
        row = next(line for line in md.splitlines() if line.startswith(f"| {row_name} |"))
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")][1:]
        assert cells == [fmt(values[m]) for m in METRIC_NAMES]
    assert "predicts 2.61 m for every pixel" in md  # baseline_depth from metrics.json
    assert "12 test images at 480×640" in md and "trained at 240×320" in md
    page = written["report_html"].read_text(encoding="utf-8")
    for m in METRIC_NAMES:
        assert fmt(metrics[m]) in page and fmt(metrics["baseline"][m]) in page


def test_published_results_shown_for_nyudv2(built):
    _, _, _, written = built
    for path in (written["report_md"], written["report_html"]):
        text = html.unescape(path.read_text(encoding="utf-8"))
        assert NOT_REPRODUCED in text
        for r in PUBLISHED:
            assert r.citation in text and f"{r.metrics['delta1']:.3f}" in text


def test_published_table_says_how_each_number_was_obtained():
    from pipeline.report.published import POOLED, published_table

    ours = {"delta1": 0.5, "abs_rel": 0.2, "rmse": 0.9}
    frame = published_table(ours, "ours", "raw ground truth", ours_tta=True).frame.set_index("Method")
    assert frame.loc["U-Net (this pipeline)", "Test-time augmentation"] == "flip TTA"
    dense = frame.loc[next(m for m in frame.index if m.startswith("DenseDepth"))]
    assert dense["Test-time augmentation"] == "flip TTA" and dense["Metrics averaged"] == POOLED
    assert "own crop" in dense["Protocol"]
    adabins = frame.loc[next(m for m in frame.index if m.startswith("AdaBins"))]
    assert adabins["Test-time augmentation"] == "flip TTA" and "24,231" in adabins["Training data"]
    assert all(frame["Metrics averaged"].str.len() > 0) and all(frame["Test-time augmentation"].str.len() > 0)


def test_no_examples_and_null_metrics_still_build(tmp_path):
    params = make_params()
    metrics = write_inputs(tmp_path, params, k=0)
    metrics["abs_rel"] = metrics["baseline"]["silog"] = None  # evaluate writes null for a NaN mean
    (tmp_path / params.paths.metrics).write_text(json.dumps(metrics))
    written = build_report(params, tmp_path)
    assert len(written["figures"]) == 5  # no grid
    md = written["report_md"].read_text(encoding="utf-8")
    assert "eval.n_examples" in md and "**AbsRel = –**" in md


INPUTS = ("metrics", "per_image", "per_scene_type", "error_by_depth", "predictions", "train_log", "run_id")


@pytest.mark.parametrize("name", INPUTS)
def test_missing_input_is_a_clear_error_and_writes_nothing(tmp_path, name):
    params = make_params()
    write_inputs(tmp_path, params, k=1)
    missing = tmp_path / getattr(params.paths, name)
    missing.unlink()
    with pytest.raises(PipelineError, match=re.escape(str(missing))):
        build_report(params, tmp_path)
    snap = _outputs(tmp_path, params)
    assert snap == {"figures": [], params.paths.report_md: b"", params.paths.report_html: b""}
    assert _leftovers(tmp_path, params) == []


def test_malformed_metrics_name_the_key(tmp_path):
    params = make_params()
    metrics = write_inputs(tmp_path, params, k=1)
    del metrics["baseline"]["rmse"]
    (tmp_path / params.paths.metrics).write_text(json.dumps(metrics))
    with pytest.raises(PipelineError, match=r"metrics\.json lacks key\(s\) baseline\.rmse"):
        build_report(params, tmp_path)


def test_failure_half_way_keeps_the_previous_report(tmp_path, monkeypatch):
    params = make_params()
    write_inputs(tmp_path, params, k=1, seed=1)
    build_report(params, tmp_path)
    before = _outputs(tmp_path, params)
    write_inputs(tmp_path, params, k=1, seed=2)  # new numbers: a finished rebuild would change the report

    def boom(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figures, "plot_error_by_depth", boom)
    with pytest.raises(RuntimeError, match="figure failed"):
        build_report(params, tmp_path)
    assert _outputs(tmp_path, params) == before
    assert _leftovers(tmp_path, params) == []
    monkeypatch.undo()
    build_report(params, tmp_path)  # and a good rebuild does replace it
    after = _outputs(tmp_path, params)
    assert after["figures"] == before["figures"]
    assert after[params.paths.report_md] != before[params.paths.report_md]
    assert _leftovers(tmp_path, params) == []


def test_abs_rel_map_masks_holes_and_is_exact_elsewhere():
    gt = np.array([[2.0, 0.0], [4.0, np.nan]], dtype=np.float32)
    pred = np.array([[3.0, 5.0], [2.0, 1.0]], dtype=np.float32)
    err = figures.abs_rel_map(gt, pred)
    assert err.mask.tolist() == [[False, True], [False, True]]
    np.testing.assert_allclose(err.compressed(), [0.5, 0.5])


def test_depth_colour_scale_is_shared_and_capped():
    gt = np.array([[0.0, 3.0]], dtype=np.float32)
    assert figures.depth_vmax(gt, np.array([[2.0, 4.0]]), max_depth=10.0) == 4.0
    assert figures.depth_vmax(gt, np.array([[2.0, 40.0]]), max_depth=10.0) == 10.0


def test_markdown_table_escapes_pipes_and_right_aligns_numbers():
    table = Table(pd.DataFrame({"name": ["a|b", "c"], "value": ["0.100", "–"]}), bold=frozenset({(1, "value")}))
    lines = markdown_table(table).splitlines()
    assert lines[1] == "|:---|---:|"
    assert lines[2] == "| a\\|b | 0.100 |"
    assert lines[3] == "| c | **–** |"


def test_log_to_mlflow_logs_report_and_ends_run(built, monkeypatch):
    root, params, _, written = built
    calls = []

    class FakeTracker:
        def log_artifact(self, path, artifact_path=None):
            calls.append(("file", Path(path).name, artifact_path))

        def log_artifacts(self, path, artifact_path=None):
            calls.append(("dir", Path(path).name, artifact_path))

        def end(self):
            calls.append(("end",))

    seen = {}
    monkeypatch.setattr(
        "pipeline.report.report.resume_run", lambda p, path, r=None: seen.update(path=path) or FakeTracker()
    )
    log_to_mlflow(params, root, written)
    assert seen["path"] == root / params.paths.run_id
    assert calls == [
        ("file", "report.html", None),
        ("file", "report.md", None),
        ("dir", "figures", "figures"),
        ("end",),
    ]


def test_stage_on_synthetic_data_omits_published_results(tmp_path):
    from stages.report import run

    params = make_params("synthetic", mlflow=False)  # resume_run is then a no-op: no MLflow store is touched
    write_inputs(tmp_path, params, k=1)
    written = run(params, tmp_path)
    for path in (written["report_md"], written["report_html"]):
        text = html.unescape(path.read_text(encoding="utf-8"))
        assert NOT_REPRODUCED not in text
        assert not any(r.citation in text for r in PUBLISHED)
        assert "not comparable" in text
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_headline_table_shows_a_dash_for_a_missing_metric_and_never_bolds_it():
    rng = np.random.default_rng(0)
    ours = fake_metrics(rng)
    base = {m: v / 2 if m in HIGHER_IS_BETTER else v * 2 for m, v in ours.items()}  # worse on every metric
    metrics = {**ours, "baseline": base}
    metrics["silog"] = float("nan")  # e.g. no image had a valid pixel for it
    table = headline_table(metrics)
    col = metric_label("silog")
    assert table.frame[col].tolist() == ["–", fmt(metrics["baseline"]["silog"])]
    assert not {(0, col), (1, col)} & table.bold
    assert {(0, metric_label(m)) for m in METRIC_NAMES if m != "silog"} <= table.bold


@pytest.mark.parametrize(
    ("size", "bounds"),
    [((480, 640), None), ((128, 160), "rows 12–126, columns 10–150 of the 128×160 test images")],
)
def test_protocol_names_the_crop_at_the_test_images_size(params: Params, size, bounds) -> None:
    from pipeline.report.document import protocol_text

    metrics = {"n_images": 3, "protocol": {"gt": "raw", "crop": "eigen", "flip_tta": False, "min_depth": 0.001,
                                           "max_depth": 10.0, "train_resolution": [128, 160],
                                           "eval_resolution": list(size)}}  # fmt: skip
    text = protocol_text(metrics, params)
    assert "rows 45–471, columns 41–601 of the 480×640 frame" in text
    assert (bounds in text) if bounds else ("test images)" not in text)


def test_camera_motion_section_shows_variants_baselines_and_the_published_protocols(tmp_path):
    params = make_params()
    write_inputs(tmp_path, params)
    md = build_report(params, tmp_path)["report_md"].read_text(encoding="utf-8")
    section = md[md.index("## Camera motion") : md.index("## Provenance")]
    for name in ("encoder_predicted", "rgb_sensor", "identity", "open3d", "gap 2: success", "ATE Sim(3) m"):
        assert name in section, name
    assert "ORB-SLAM2 (RGB-D)" in section and "monocular" in section and "Sim3" in section  # the protocol columns
    assert "figures/pose_trajectories.png" in section and "figures/pose_by_gap.png" in section


def test_camera_motion_section_says_so_when_the_pose_stage_had_no_sequences(tmp_path):
    params = make_params()
    write_inputs(tmp_path, params)
    note = "no sequences under data/sequences (sequences.enabled is false)"
    (tmp_path / params.paths.pose_table).write_text(json.dumps({"enabled": False, "note": note}))
    shutil.rmtree(tmp_path / params.paths.pose_trajectories)
    written = build_report(params, tmp_path)
    md = written["report_md"].read_text(encoding="utf-8")
    assert f"Not run: {note}." in md and not any(p.name.startswith("pose_") for p in written["figures"])


def test_published_table_is_method_by_sequence_with_this_runs_figures_beside_them():
    from pipeline.report.pose_section import published_table, tum_short_name
    from pipeline.trajectory.published import published_rows
    from tests.report_fixtures import _method

    assert tum_short_name("rgbd_dataset_freiburg1_desk") == "fr1/desk" and tum_short_name("synthetic_001") is None
    entry = _method(np.random.default_rng(0), features="rgb", depth="sensor", weights="trained")
    entry["ate_per_sequence"] = {"rgbd_dataset_freiburg1_desk": {"se3": {"rmse_m": 0.0421}, "sim3": {}}}
    table = {"variants": {"rgb_sensor": entry}, "baselines": {"open3d": {"available": False, "reason": "no libGL"}}}
    frame = published_table(table).frame
    methods = {r["method"] for r in published_rows()}
    assert len(frame) == len(methods) + 1  # one row a method (not one a method and sequence), and this run's
    assert frame.columns[2] == "fr1/desk"  # the run's own sequence first
    ours = frame[frame["method"] == "this run: rgb_sensor"].iloc[0]
    assert ours["fr1/desk"] == "0.042" and ours["fr1/xyz"] == MISSING
    assert frame[frame["method"] == "ORB-SLAM2 (RGB-D)"].iloc[0]["fr1/desk"] == "0.016"


def test_an_unavailable_baseline_is_named_with_its_reason_and_left_out_of_the_tables(tmp_path):
    params = make_params()
    write_inputs(tmp_path, params)
    table = json.loads((tmp_path / params.paths.pose_table).read_text())
    reason = "Open3D cannot load libGL.so.1; install the system's libGL.so.1 (apt-get install libgl1)"
    table["baselines"]["open3d"] = {"available": False, "reason": reason, "depth": "sensor"}
    (tmp_path / params.paths.pose_table).write_text(json.dumps(table))
    md = build_report(params, tmp_path)["report_md"].read_text(encoding="utf-8")
    section = md[md.index("## Camera motion") : md.index("## Provenance")]
    assert f"open3d: {reason}" in section
    assert "| open3d |" not in section  # no row of empty figures
