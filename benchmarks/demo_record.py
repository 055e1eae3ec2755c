"""`make demo`'s closing figures as a results file (run by scripts/demo.sh when DEMO_RECORD is set).

    DEMO_RECORD=benchmarks/results/demo.json make demo

Reads what the demo's run just wrote (`reports/metrics.json`, `reports/train_log.tsv`,
paths from params.yaml), adds the wall-clock time demo.sh measured, and prints (and with
`--record` writes, with its provenance) one JSON object: the test metrics of the U-Net
and of the constant-depth baseline, the best epoch's place, the number of test images,
the epochs' total seconds and the demo's end-to-end seconds, and the pose stage's scores
(`reports/pose_table.json`: RPE RMSE and success rate per gap and ATE, per method).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import REPO, Recording, add_record_flag  # noqa: E402

SHOWN = ("abs_rel", "rmse", "delta1")


def demo_figures(root: Path, experiment: str, seconds: float, paths: dict[str, str]) -> dict[str, object]:
    """The demo's figures from the files its run wrote under `root`."""
    metrics = json.loads((root / paths["metrics"]).read_text())
    rows = (root / paths["train_log"]).read_text().splitlines()
    header = rows[0].split("\t")
    epoch_s = sum(float(r.split("\t")[header.index("seconds")]) for r in rows[1:])
    return {
        "experiment": experiment,
        "seconds": round(seconds),
        "epochs": len(rows) - 1,
        "train_seconds": round(epoch_s),
        "model_epoch": metrics.get("model_epoch"),
        "n_images": metrics["n_images"],
        "model": {k: round(float(metrics[k]), 4) for k in SHOWN},
        "baseline": {k: round(float(metrics["baseline"][k]), 4) for k in SHOWN},
        "protocol": metrics["protocol"],
        "pose": pose_figures(root / paths["pose_table"]),
    }


def pose_figures(path: Path) -> dict[str, object] | None:
    """The pose stage's scores, per method: RPE RMSE and success per gap, ATE; None when it scored nothing."""
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    if not m.get("enabled"):
        return None
    methods = {}
    for group in ("variants", "baselines"):
        for name, v in m[group].items():
            if v.get("available") is False:
                methods[name] = {"available": False, "reason": v["reason"]}
                continue
            methods[name] = {  # rpe: gap -> [translation RMSE m, rotation RMSE deg]
                "rpe": {
                    g: [_round(r["trans_m"]["rmse"], 5), _round(r["rot_deg"]["rmse"], 3)] for g, r in v["rpe"].items()
                },
                "success": {g: round(s, 3) for g, s in v["success"].items()},
                "ate_se3_m": _round(v["ate"]["se3"]["rmse_m"] if v["ate"] else None),
                "ate_sim3_m": _round(v["ate"]["sim3"]["rmse_m"] if v["ate"] else None),
                "pairs_per_s": _round(v["pairs_per_s"], 2),
            }
    keep = ("sequences", "frames", "resolution", "device", "success_threshold")
    return {**{k: m[k] for k in keep}, "methods": methods}


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(float(v), digits)


def main() -> None:
    """Prints (and records) the demo's figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, help="the demo's DVC experiment name")
    ap.add_argument("--seconds", type=float, required=True, help="the demo's wall-clock time")
    ap.add_argument("--load-avg", type=float, help="the 1-minute load average when the demo started")
    ap.add_argument("--command", default="make demo", help="the command that ran the demo")
    add_record_flag(ap, "demo")
    a = ap.parse_args()
    rec = Recording.begin("demo", a.record, command=a.command, load_avg_1m=a.load_avg)
    import yaml

    paths = yaml.safe_load((REPO / "params.yaml").read_text())["paths"]
    rec.finish(demo_figures(REPO, a.experiment, a.seconds, paths))


if __name__ == "__main__":
    main()
