"""The report's tables as pandas frames of display strings, plus which cells to emphasise.

Formatting lives here once, so report.md and report.html show the same digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.config import flatten
from pipeline.metrics import HIGHER_IS_BETTER, METRIC_NAMES

_SHORT = {
    "delta1": "δ1",
    "delta2": "δ2",
    "delta3": "δ3",
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "rmse_log": "RMSE log",
    "log10": "log10",
    "silog": "SILog",
}
MISSING = "–"


@dataclass(frozen=True)
class Table:
    """A table ready to render: string cells, bold cells by (row, column name), a caption."""

    frame: pd.DataFrame
    caption: str = ""
    bold: frozenset[tuple[int, str]] = field(default_factory=frozenset)


def metric_label(name: str) -> str:
    """Short display name with the better direction: 'δ1 ↑', 'AbsRel ↓'."""
    return f"{_SHORT.get(name, name)} {'↑' if name in HIGHER_IS_BETTER else '↓'}"


def fmt(value: Any, digits: int = 3) -> str:
    """A number to `digits` decimals; NaN/None as '–'; non-numbers as str."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value):
        return MISSING
    return f"{value:.{digits}f}"


def _better(name: str, a: float, b: float) -> bool:
    return a > b if name in HIGHER_IS_BETTER else a < b


def headline_table(metrics: dict[str, Any]) -> Table:
    """The model against the constant-depth baseline, one column per metric; the better one bold."""
    rows = {"U-Net (this pipeline)": metrics, "Constant-depth baseline": metrics["baseline"]}
    frame = pd.DataFrame([{"": name, **{metric_label(m): fmt(v[m]) for m in METRIC_NAMES}} for name, v in rows.items()])
    bold = set()
    for m in METRIC_NAMES:
        ours, base = metrics[m], metrics["baseline"][m]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (ours, base)):
            continue  # a NaN/null metric (e.g. no valid pixel) is shown as '–' and never bold
        if _better(m, ours, base):
            bold.add((0, metric_label(m)))
        elif _better(m, base, ours):
            bold.add((1, metric_label(m)))
    caption = "Test-set metrics (bold: the better of the two). ↑ higher is better, ↓ lower is better."
    return Table(frame, caption, frozenset(bold))


def scene_type_table(per_scene_type: pd.DataFrame) -> Table:
    """Mean metrics per scene type, most images first; the best value of each metric bold."""
    df = per_scene_type.sort_values(["n_images", "scene_type"], ascending=[False, True]).reset_index(drop=True)
    frame = pd.DataFrame({"Scene type": df["scene_type"].astype(str), "Images": df["n_images"].astype(int).astype(str)})
    bold = set()
    for m in METRIC_NAMES:
        frame[metric_label(m)] = [fmt(v) for v in df[m]]
        col = df[m].astype(float)
        if len(df) > 1 and col.notna().any():
            best = col.idxmax() if m in HIGHER_IS_BETTER else col.idxmin()
            bold.add((int(best), metric_label(m)))
    return Table(frame, "Mean of per-image metrics by scene type (bold: the best scene type).", frozenset(bold))


def error_by_depth_table(error_by_depth: pd.DataFrame) -> Table:
    """Errors by ground-truth depth bin, with each bin's share of the valid pixels."""
    df = error_by_depth
    share = df["n_pixels"] / max(int(df["n_pixels"].sum()), 1)
    frame = pd.DataFrame(
        {
            "Depth (m)": [f"{lo:.1f}–{hi:.1f}" for lo, hi in zip(df["depth_bin_lo"], df["depth_bin_hi"], strict=True)],
            "Pixels": [f"{int(n):,}" for n in df["n_pixels"]],
            "Share": [f"{100 * s:.1f}%" for s in share],
            metric_label("abs_rel"): [fmt(v) for v in df["abs_rel"]],
            metric_label("rmse"): [fmt(v) for v in df["rmse"]],
            metric_label("delta1"): [fmt(v) for v in df["delta1"]],
        }
    )
    return Table(frame, "Errors over all valid test pixels, binned by ground-truth depth.")


def key_value_table(items: dict[str, Any], caption: str = "", key: str = "", value: str = "") -> Table:
    """A two-column table of facts."""
    frame = pd.DataFrame({key or "Item": list(items), value or "Value": [fmt(v, 6) for v in items.values()]})
    return Table(frame, caption)


def params_table(yaml_dict: dict[str, Any]) -> Table:
    """Every param grouped by params.yaml section; the section is named on its first row only."""
    rows = []
    for section, values in yaml_dict.items():
        flat = flatten(values) if isinstance(values, dict) else {"": values}
        for i, (k, v) in enumerate(flat.items()):
            rows.append({"Section": section if i == 0 else "", "Key": k, "Value": _param_str(v)})
    return Table(pd.DataFrame(rows), "All params of this run (params.yaml), by section.")


def _param_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v == "":
        return '""'
    return str(v)
