"""Speed and basin of the pose solver (`pipeline.pose`) on synthetic pairs (run on demand; not a test).

    python benchmarks/pose.py                      # this CPU: ~2 minutes
    python benchmarks/pose.py --device cuda        # the GPU check (goal: >= 30 pairs/s at 240x320)
    python benchmarks/pose.py --model models/model.pt   # the basin of a trained encoder too

Speed: alignment pairs/s at each `--sizes` for intensities (`rgb`) and the encoder
features of U-Nets of three sizes (`tiny` 4 channels depth 2, `demo` 16/4, `default`
32/4; random weights: the speed does not depend on them, the iterations a little), and
the bare feature extraction of the same pairs (both frames of each pair encoded). The
ratio extract / (extract + align) is the share of a pair's time that is the network:
1 - ratio is what the solver costs. Each figure is the fastest of `--repeats` timed
passes after a warm-up (other load on a shared machine only ever slows a pass down).

`sequence_pairs_per_s` is the same with one frame extracted per pair, as in a sequence
where each frame serves two pairs and is extracted once (`pipeline.pose.estimate`).
`speed_geometric` repeats every speed row with the geometric term (`GEOMETRIC_WEIGHT`), as
the sensor-depth variants align by default (`pose.depth_weight`).

Basin: from the identity, the success rate against the motion between the frames, per
variant, with the target's sensor depth; success = translation error < 2 cm and rotation
error < 1 degree (`SUCCESS_M`, `SUCCESS_DEG`). The gaps mix translation and rotation, and
also take each alone (`GAPS`: pure translation up to 20 cm, pure rotation up to 15
degrees), so the basin is measured against both; every gap is beyond the success
threshold, so the identity itself never succeeds. `t_scale` is the median ratio of the
estimated translation's component along the true one to the true one's length (1:
unbiased; below 1: estimates shrink). Variants: `rgb`, `rgb+geometric` (with the
geometric term, `GEOMETRIC_WEIGHT`, against the source's sensor depth), `encoder-untrained`
(the demo-sized U-Net at its seeded initial weights, `untrained_copy`), and with
`--model` the trained `encoder`, its `untrained_copy`, `encoder+geometric`, and `rgb+predicted` and
`encoder+predicted` with the model's depth instead of the sensor's.

Readable lines, then the last line: one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.camera import NYU_KINECT  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.model.build import DepthNet, build_model  # noqa: E402
from pipeline.model.serialize import load_model  # noqa: E402
from pipeline.pose import AlignOptions, align, extract, untrained_copy  # noqa: E402
from pipeline.pose.pairs import PairBatch, synthetic_pairs  # noqa: E402
from pipeline.pose.se3 import pose_error  # noqa: E402

SUCCESS_M, SUCCESS_DEG = 0.02, 1.0
MODELS = {"tiny": (4, 2), "demo": (16, 4), "default": (32, 4)}  # (base_channels, depth)
GEOMETRIC_WEIGHT = 1.0  # the `+geometric` variants: the depth term at this weight (pose.depth_weight)
GAPS = [  # (metres, degrees): mixed, then translation alone, then rotation alone
    (0.03, 2.0), (0.06, 4.0), (0.10, 6.0), (0.15, 9.0), (0.25, 15.0),
    (0.05, 0.0), (0.10, 0.0), (0.20, 0.0),
    (0.0, 4.0), (0.0, 9.0), (0.0, 15.0),
]  # fmt: skip


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", nargs="*", default=["128x160", "240x320"], help="HxW of the speed runs (none: no speed)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=4, help="pairs aligned at once")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--basin-pairs", type=int, default=8, help="pairs per gap (0: no basin)")
    ap.add_argument("--basin-size", default="128x160", help="HxW of the basin's pairs (the demo's)")
    ap.add_argument("--model", type=Path, help="a trained models/model.pt: adds its encoder to the basin")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_record_flag(ap, "pose")
    return ap.parse_args()


def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _on(pairs: PairBatch, device: torch.device) -> PairBatch:
    return PairBatch(*(getattr(pairs, f.name).to(device) for f in dataclasses.fields(pairs)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """The fastest of `repeats` timed calls after one warm-up, and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def speed(model: DepthNet | None, pairs: PairBatch, kind: str, opts: AlignOptions, device, repeats: int) -> dict:
    """Seconds to extract both frames' pyramids, to align, and pairs/s of the two together."""
    B, (H, W) = pairs.rgb_tgt.shape[0], pairs.rgb_tgt.shape[-2:]
    K = NYU_KINECT.scaled(W, H)

    def both() -> tuple:
        return extract(model, pairs.rgb_tgt, kind, opts.strides), extract(model, pairs.rgb_src, kind, opts.strides)

    t_extract, (tgt, src) = _timed(both, device, repeats)  # type: ignore[misc]
    t_align, res = _timed(
        lambda: align(tgt, src, pairs.depth_tgt, K, None, opts, depth_src=pairs.depth_src), device, repeats
    )
    return {
        "extract_s": round(t_extract, 4),
        "align_s": round(t_align, 4),
        "pairs_per_s": round(B / (t_extract + t_align), 2),
        "sequence_pairs_per_s": round(B / (t_extract / 2 + t_align), 2),
        "align_pairs_per_s": round(B / t_align, 2),
        "extract_ratio": round(t_extract / (t_extract + t_align), 3),
        "mean_iterations": round(float(res.iterations.float().mean()), 1),  # type: ignore[attr-defined]
    }


def basin(variants: dict[str, tuple], n: int, size: tuple[int, int], opts: AlignOptions, device) -> dict:
    """Per variant and gap: success rate, converged rate, median errors over n pairs from the identity."""
    out: dict[str, list] = {name: [] for name in variants}
    K = NYU_KINECT.scaled(size[1], size[0])
    for gap_m, gap_deg in GAPS:
        pairs = _on(synthetic_pairs(list(range(100, 100 + n)), size, gap_m, gap_deg), device)
        for name, (model, kind, depth_net, own) in variants.items():
            o = own or opts
            tgt, src = (extract(model, x, kind, o.strides) for x in (pairs.rgb_tgt, pairs.rgb_src))
            with torch.no_grad():
                depth = pairs.depth_tgt if depth_net is None else depth_net(pairs.rgb_tgt)  # sensor or predicted
                depth_src = pairs.depth_src if depth_net is None else depth_net(pairs.rgb_src)
            res = align(tgt, src, depth, K, None, o, depth_src=depth_src)
            t_err, r_err = (x.cpu() for x in pose_error(res.T, pairs.T))
            ok = (t_err < SUCCESS_M) & (r_err < SUCCESS_DEG)
            t_true, t_est = pairs.T[:, :3, 3].cpu(), res.T[:, :3, 3].cpu()
            along = (t_true * t_est).sum(1) / (t_true * t_true).sum(1).clamp_min(1e-12)
            row = {
                "gap_cm": gap_m * 100,
                "gap_deg": gap_deg,
                "success": round(ok.float().mean().item(), 3),
                "converged": round(res.converged.float().mean().item(), 3),
                "median_t_mm": round(float(t_err.median()) * 1000, 1),
                "median_r_deg": round(float(r_err.median()), 3),
                "t_scale": round(float(along.median()), 3) if gap_m > 0 else None,
            }
            out[name].append(row)
            print(
                f"basin {name:>18} gap {gap_m * 100:4.0f} cm {gap_deg:4.1f} deg: success {row['success']:.2f} "
                f"converged {row['converged']:.2f} median error {row['median_t_mm']} mm {row['median_r_deg']} deg "
                f"t_scale {row['t_scale']}"
            )
    return out


def main() -> None:
    a = _args()
    rec = Recording.begin("pose", a.record)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; nothing measured")
        print(json.dumps({"device": "cuda", "available": False}))
        return
    opts = AlignOptions()
    base = load_params(Path(__file__).resolve().parents[1] / "params.yaml").model
    models: dict[str, DepthNet] = {}
    for name in a.models:
        torch.manual_seed(0)
        c, d = MODELS[name]
        models[name] = build_model(dataclasses.replace(base, base_channels=c, depth=d)).to(device).eval()
    rows: list[dict] = []
    rows_geometric: list[dict] = []  # the same with the geometric term (the sensor-depth variants' default)
    geometric = dataclasses.replace(opts, depth_weight=GEOMETRIC_WEIGHT)
    for size in map(_hw, a.sizes):
        pairs = _on(synthetic_pairs(list(range(a.batch)), size), device)
        for name, model, kind in [("-", None, "rgb")] + [(n, m, "encoder") for n, m in models.items()]:
            for out, o, label in ((rows, opts, ""), (rows_geometric, geometric, " +geometric")):
                row = {"size": f"{size[0]}x{size[1]}", "features": kind, "model": name, "batch": a.batch}
                row |= speed(model, pairs, kind, o, device, a.repeats)
                out.append(row)
                print(
                    f"speed {row['size']:>8} {kind:>7} {name:>7}{label}: {row['pairs_per_s']:7.2f} pairs/s "
                    f"(align alone {row['align_pairs_per_s']:7.2f}/s; extraction {row['extract_ratio']:.0%} of the "
                    f"time; {row['mean_iterations']} iterations)"
                )
    # name -> (features' model, kind, depth network or None: the sensor's, options or None: the defaults)
    geometric = dataclasses.replace(opts, depth_weight=GEOMETRIC_WEIGHT)
    variants: dict[str, tuple] = {"rgb": (None, "rgb", None, None), "rgb+geometric": (None, "rgb", None, geometric)}
    if "demo" in models:
        variants["encoder-untrained"] = (untrained_copy(models["demo"], seed=0), "encoder", None, None)
    if a.model is not None:
        trained, _ = load_model(a.model, map_location=device)
        trained.eval()
        variants["encoder"] = (trained, "encoder", None, None)
        variants["encoder-untrained"] = (untrained_copy(trained, seed=0), "encoder", None, None)
        variants["encoder+geometric"] = (trained, "encoder", None, geometric)
        variants["rgb+predicted"] = (None, "rgb", trained, None)
        variants["encoder+predicted"] = (trained, "encoder", trained, None)
    result = basin(variants, a.basin_pairs, _hw(a.basin_size), opts, device) if a.basin_pairs else {}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rec.finish(
        {
            "device": name,
            "threads": torch.get_num_threads(),
            "options": dataclasses.asdict(opts),
            "success": {"max_translation_m": SUCCESS_M, "max_rotation_deg": SUCCESS_DEG},
            "speed": rows,
            "speed_geometric": rows_geometric,
            "basin": result,
        }
    )


if __name__ == "__main__":
    main()
