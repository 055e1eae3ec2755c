"""The alignment term's ablation: the demo's model trained with and without it, then scored for pose and depth.

    python benchmarks/align_training.py                        # the demo's settings, weight 10
    python benchmarks/align_training.py --weights 10 30 --record   # writes results/align_training.json

Builds the demo's data once (synthetic, 128x160, `scripts/demo.sh`'s DEMO_SET: 800 images,
base_channels 16, bf16 where the CPU has it), then trains the same seed with
`loss.align.weight` 0 (depth only) and each weight W, through the stage cores
(`download`, `preprocess`, `sequences`, `align_data`, `train`, `evaluate`). Each model is
scored as the pose stage scores (`pipeline.pose.sweep.sweep`, success within
`pose.success_trans_m` and `pose.success_rot_deg` from the identity) with sensor and with
predicted depth, beside the untrained control and intensities, on the demo's synthetic
evaluation sequences and on the real dev frames (`--real`: fr1/rpy frames 300 onward,
resized to 128x160; the held-out frames 0-299 are never read); and for depth by
evaluate's test delta1 and AbsRel. Prints a line per model and, last, the JSON object.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import Params, params_from_dict  # noqa: E402
from pipeline.model import load_model  # noqa: E402
from pipeline.pose.estimate import Variant  # noqa: E402
from pipeline.pose.features import untrained_copy  # noqa: E402
from pipeline.pose.pose import _predictor  # noqa: E402
from pipeline.pose.reference import meta  # noqa: E402
from pipeline.pose.results import table  # noqa: E402
from pipeline.pose.sweep import sweep  # noqa: E402
from pipeline.sequences.layout import list_sequences  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = Path("/work/data/tum/freiburg1_rpy_dev")  # fr1/rpy frames 300-722 (/work/data/tum/README.txt)
BF16 = any(f in Path("/proc/cpuinfo").read_text() for f in ("amx_bf16", "avx512_bf16"))
DEMO = {  # scripts/demo.sh's DEMO_SET, as nested params
    "data": {"source": "synthetic", "synthetic": {"n_images": 800, "height": 128, "width": 160}},
    "preprocess": {"height": 128, "width": 160},
    "model": {"base_channels": 16, "depth": 4},
    "train": {"batch_size": 8, "lr": 0.005, "warmup_epochs": 1, "augment": False, "device": "cpu",
              "amp": "bf16" if BF16 else "off", "epochs": 22 if BF16 else 10},
    "eval": {"batch_size": 8},
    "sequences": {"source": "synthetic", "synthetic": {"n": 2, "frames": 20, "height": 128, "width": 160}},
    "pose": {"device": "cpu"},
    "mlflow": {"enabled": False},
}  # fmt: skip
STAGES = ("download", "preprocess", "sequences", "align_data", "train", "evaluate")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) else v
    return out


def demo_params(args: argparse.Namespace, weight: float) -> Params:
    """The demo's params with the term at `weight` (and the benchmark's term settings)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    over = _merge(DEMO, {"data": {"synthetic": {"n_images": args.images}}})
    if args.epochs:
        over["train"]["epochs"] = args.epochs
    align = {"weight": weight, "pairs_per_step": args.pairs_per_step, "iterations": args.iterations,
             "perturb_rot_deg": args.rot_deg, "perturb_trans_m": args.trans_m, "error": args.error,
             "sequences": args.align_sequences,
             "frames": args.align_frames}  # fmt: skip
    over["loss"] = {"align": align}
    return params_from_dict(_merge(raw, over))


def _stage(name: str, params: Params, root: Path) -> Any:
    import importlib

    start = time.perf_counter()
    out = importlib.import_module(f"stages.{name}").run(params, root)
    print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return out


def train_one(params: Params, base: Path, root: Path, reuse: bool) -> dict[str, Any]:
    """Trains and evaluates in `root`, on `base`'s data (linked); returns timing and depth figures.

    With `reuse`, a model already trained and evaluated there is kept (the same seed and
    params train the same weights bit for bit: tests/test_align.py), e.g. the depth-only
    baseline of an earlier run of this benchmark in the same `--work` folder.
    """
    for rel in (params.paths.processed_dir, params.paths.sequences):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (root / rel).exists():
            (root / rel).symlink_to(base / rel)
    if not (reuse and (root / params.paths.metrics).is_file()):
        _stage("align_data", params, root)
        _stage("train", params, root)
        _stage("evaluate", params, root)
    metrics = json.loads((root / params.paths.metrics).read_text())
    with open(root / params.paths.train_log) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    best = min(rows, key=lambda r: float(r["val_abs_rel"]))  # train.best_metric: abs_rel, the demo's
    align = rows[-1].get("train_align_loss")
    return {"train_s": round(sum(float(r["seconds"]) for r in rows), 1), "delta1": round(metrics["delta1"], 4),
            "abs_rel": round(metrics["abs_rel"], 4), "best_epoch": int(best["epoch"]),
            "final_align_loss": float(align) if align else None}  # fmt: skip


def pose_scores(params: Params, root: Path, folders: list[Path], control: bool, max_frames: int) -> dict:
    """Success per gap of the model's encoder (sensor, predicted depth), + control and intensities when asked."""
    dev = torch.device("cpu")
    params = dataclasses.replace(params, pose=dataclasses.replace(params.pose, max_frames=max_frames))
    model, _ = load_model(root / params.paths.model, map_location=dev)
    hw = (params.preprocess.height, params.preprocess.width)
    methods: list = [Variant("encoder", "sensor"), Variant("encoder", "predicted")]
    nets = {"trained": model}
    if control:
        methods += [Variant("encoder", "sensor", "untrained"), Variant("rgb", "sensor"), Variant("rgb", "predicted")]
        nets["untrained"] = untrained_copy(model, params.pose.seed)
    done = sweep(params, folders, methods, hw, nets, dev, _predictor(model, params.pose.batch_size))
    full = table(done, methods, meta(params, done, hw, dev))
    return {name: {"success": v["success"], "rot_rmse": {g: r["rot_deg"]["rmse"] for g, r in v["rpe"].items()}}
            for name, v in full["variants"].items()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=float, nargs="+", default=[10.0], help="loss.align.weight values to train")
    ap.add_argument("--images", type=int, default=800, help="synthetic images (the demo: 800)")
    ap.add_argument("--epochs", type=int, default=0, help="0: the demo's (22 with bf16, else 10)")
    ap.add_argument("--pairs-per-step", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--rot-deg", type=float, default=5.0)
    ap.add_argument("--trans-m", type=float, default=0.05)
    ap.add_argument("--error", choices=("reprojection", "points"), default="reprojection", help="loss.align.error")
    ap.add_argument("--align-sequences", type=int, default=8)
    ap.add_argument("--align-frames", type=int, default=40)
    ap.add_argument("--real", type=Path, default=REAL, help="a TUM-layout dev sequence ('' to skip)")
    ap.add_argument("--real-frames", type=int, default=100, help="its first N frames")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="keep models already trained in --work (same settings)")
    add_record_flag(ap, "align_training")
    args = ap.parse_args()
    rec = Recording.begin("align_training", args.record)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = args.work or Path(tempfile.mkdtemp(prefix="align_training_"))
    base = work / "w0"
    p0 = demo_params(args, 0.0)
    base.mkdir(parents=True, exist_ok=True)
    for name in ("download", "preprocess", "sequences"):
        if not (args.reuse and (base / p0.paths.processed_dir / "summary.json").is_file()):
            _stage(name, p0, base)
    synthetic = list_sequences(base / p0.paths.sequences)
    real = [args.real] if str(args.real) not in ("", ".") and args.real.is_dir() else []
    out: dict[str, Any] = {"settings": {**{k: v for k, v in vars(args).items() if k not in ("record", "work", "reuse")},
                                        "epochs": p0.train.epochs, "amp": p0.train.amp, "real": str(args.real)},
                           "models": {}}  # fmt: skip
    out["settings"]["real"] = str(args.real)
    for w in [0.0, *args.weights]:
        params = demo_params(args, w)
        root = base if w == 0 else work / f"w{w:g}"
        print(f"loss.align.weight {w:g}", flush=True)
        entry = train_one(params, base, root, args.reuse)
        entry["synthetic"] = pose_scores(params, root, synthetic, w == 0, 0)
        if real:
            entry["real"] = pose_scores(params, root, real, w == 0, args.real_frames)
        out["models"][f"{w:g}"] = entry
        print(json.dumps({f"{w:g}": entry}, default=str), flush=True)
    rec.finish(json.loads(json.dumps(out, default=str)))


if __name__ == "__main__":
    main()
