"""What MLflow tracking adds to a training run of `make demo`'s size (run on demand; not a test).

    python benchmarks/mlflow_overhead.py                 # 6 epochs, mlflow.val_images panel images
    python benchmarks/mlflow_overhead.py --epochs 10 --val-images 8

Renders and preprocesses the demo's data and trains the demo's model with the overrides
read from `scripts/demo.sh` (its `DEMO_SET`, so the two cannot drift apart; the PNG cost
depends on the pixels), with MLflow on, into a throw-away sqlite store, and times every call of
`Tracker.log_val_panels` (read the images on the first call, predict, draw, write the PNG
and its thumbnail, tag the run) and the logging of the MLflow model at the end. The
panel cost is compared with the epoch time (the train log's `seconds`: training and
validation). The last line printed is a JSON object: epoch_s (median), panel_s (median
of the epochs after the first), first_panel_s, panel_share (panel_s / epoch_s),
predict_s (the forward pass inside panel_s), min_share (fastest panel / fastest epoch:
the least disturbed by other load), log_model_s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import yaml  # noqa: E402

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import Params, params_from_dict  # noqa: E402
from pipeline.data import download, preprocess  # noqa: E402
from pipeline.tracking import panels  # noqa: E402
from pipeline.tracking.tracker import Tracker  # noqa: E402
from pipeline.training import train as training  # noqa: E402
from tests.conftest import repo_raw  # noqa: E402

DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def demo_params(extra: dict[str, object]) -> Params:
    """params.yaml with `scripts/demo.sh`'s `DEMO_SET` overrides applied, then `extra` ({"train.epochs": 3})."""
    text = DEMO_SCRIPT.read_text()
    block = text[text.index("DEMO_SET=(") : text.index("\n)\n")].splitlines()[1:]
    sets = [line.strip().split("=", 1) for line in block if line.strip() and not line.strip().startswith("#")]
    raw = repo_raw()
    for key, value in [*((k, yaml.safe_load(v)) for k, v in sets), *extra.items()]:
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[name] = value
    return params_from_dict(raw)


def _timed(calls: list[float], method):  # noqa: ANN001, ANN202
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        out = method(*args, **kwargs)
        calls.append(time.perf_counter() - start)
        return out

    return wrapper


def main() -> None:
    """Runs the tracked training and prints the figures (last line: JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--val-images", type=int, help="default: mlflow.val_images")
    add_record_flag(ap, "mlflow_overhead")
    args = ap.parse_args()
    rec = Recording.begin("mlflow_overhead", args.record)
    panel_calls: list[float] = []
    model_calls: list[float] = []
    Tracker.log_val_panels = _timed(panel_calls, Tracker.log_val_panels)  # type: ignore[method-assign]
    predict_calls: list[float] = []
    panels.predict_panels = _timed(predict_calls, panels.predict_panels)
    Tracker.log_servable_model = _timed(model_calls, Tracker.log_servable_model)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.pop("DVC_ROOT", None)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
        dotted: dict[str, object] = {"train.epochs": args.epochs, "mlflow.enabled": True, "mlflow.system_metrics": True}
        if args.val_images is not None:
            dotted["mlflow.val_images"] = args.val_images
        params = demo_params(dotted)
        os.chdir(root)
        download.run(params, root)
        preprocess.run(params, root)
        training.run(params, root)
        rows = (root / params.paths.train_log).read_text().splitlines()
        seconds = [float(r.split("\t")[-1]) for r in rows[1:]]
    epoch_s = statistics.median(seconds)
    panel_s = statistics.median(panel_calls[1:]) if len(panel_calls) > 1 else float("nan")
    out = {
        "epoch_s": round(epoch_s, 4),
        "panel_s": round(panel_s, 4),
        "first_panel_s": round(panel_calls[0], 4),
        "panel_share": round(panel_s / epoch_s, 4),
        "predict_s": round(statistics.median(predict_calls[1:]), 4) if len(predict_calls) > 1 else None,
        # The fastest epoch and panel: the least disturbed by other load on the machine.
        "min_share": round(min(panel_calls[1:], default=float("nan")) / min(seconds), 4),
        "log_model_s": round(model_calls[0], 3),
    }
    print(f"epoch {epoch_s:.3f} s (median of {len(seconds)}); panels {panel_s * 1000:.1f} ms per epoch "
          f"({out['panel_share']:.1%} of an epoch; first call {panel_calls[0] * 1000:.0f} ms, reading the images); "
          f"of which the forward pass {out['predict_s'] * 1000:.1f} ms; fastest panel / fastest epoch "
          f"{out['min_share']:.1%}; "
          f"logging the MLflow model {model_calls[0]:.2f} s once")  # fmt: skip
    rec.finish(out)


if __name__ == "__main__":
    main()
