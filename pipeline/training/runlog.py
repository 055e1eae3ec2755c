"""`reports/train_log.tsv`: one row per epoch, rewritten whole (atomically) after each epoch.

Rewriting from the rows kept in the resume checkpoint, rather than appending, means
an interrupted and resumed run has neither duplicate nor missing epochs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pipeline.io import write_json_atomic, write_text_atomic
from pipeline.metrics import METRIC_NAMES

COLUMNS = ("epoch", "train_loss", "val_loss", *(f"val_{m}" for m in METRIC_NAMES), "lr", "images_per_s", "seconds")

ALIGN_COLUMN = "train_align_loss"  # the alignment term's mean loss (pipeline.training.align), after train_loss


def _cell(v: Any) -> str:
    if v is None:
        return ""  # not validated this epoch (train.val_every > 1)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_train_log(rows: list[dict[str, Any]]) -> str:
    """The TSV text: a header of `COLUMNS` (+ `ALIGN_COLUMN` when the term ran), then one line per row."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    columns = list(COLUMNS)
    if any(ALIGN_COLUMN in row for row in rows):  # the term ran (loss.align.weight > 0); else the log is as before
        columns.insert(columns.index("train_loss") + 1, ALIGN_COLUMN)
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_train_log(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Writes every epoch's row to `path` atomically."""
    write_text_atomic(path, format_train_log(rows))


def train_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The train stage's DVC metrics: the last epoch's alignment-term loss, or {} when the term is off.

    Only the term's loss: the depth losses are evaluate's metrics (metrics.json), and a
    column that every experiment changes would crowd `dvc exp show --only-changed`.
    """
    last = rows[-1] if rows else {}
    return {"train": {"align_loss": last[ALIGN_COLUMN]}} if ALIGN_COLUMN in last else {}


def write_train_metrics(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Writes `train_metrics(rows)` to `path` atomically (JSON)."""
    write_json_atomic(path, train_metrics(rows))
