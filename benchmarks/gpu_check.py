"""Everything a GPU must show, in one command (at most ~8 minutes on one H100/H200).

    python3 benchmarks/gpu_check.py                 # on the GPU machine
    python3 benchmarks/gpu_check.py --device cpu --quick   # the same checks, tiny, on the CPU (CI)

Runs the stages through the library (no DVC, no MLflow: tracking is off), so it needs
only PyTorch, h5py, numpy, scipy, pyyaml, tqdm and Pillow. Sections, each printed as
readable lines, each a key of the final JSON line:
- e2e: synthetic data -> preprocess -> train on the device (bf16 on CUDA) -> evaluate; finite metrics.
- throughput: training-loop images/s at bf16 and float32 and the loop / bare-step ratio (target >= 0.98).
- mfu: FLOPs per training step (torch.utils.flop_counter), images/s, MFU against the device's dense bf16
  peak (datasheet, and a bf16 matrix product measured here) and peak memory, per batch size; below 20%
  MFU, the top kernels (torch.profiler) and each convolution's arithmetic intensity against the
  device's ridge point (what bounds them).
- compile: torch.compile's compile time and steady-state speed-up.
- deterministic: two short runs with train.deterministic give identical weights.
- ddp: a one-process torchrun run (NCCL on CUDA, gloo on the CPU) matches a plain run.
Without CUDA (and without --device cpu) it says so and exits 0. Exit 1 when a check fails.
The stages' progress bars go to stderr: `2>/dev/null` leaves the readable lines alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
import timing  # noqa: E402

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import Params, params_from_dict, to_yaml_dict  # noqa: E402
from pipeline.data import download, preprocess  # noqa: E402
from pipeline.evaluation import evaluate  # noqa: E402
from pipeline.model.build import build_model  # noqa: E402
from pipeline.training import train as training  # noqa: E402
from pipeline.training.loop import Trainer, optimise  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) and HBM bandwidth (B/s), from NVIDIA's
# datasheets; the first name found in torch.cuda.get_device_name() wins (SXM figures).
PEAKS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 4.8e12),
    "H100": (989e12, 3.35e12),
    "A100": (312e12, 2.0e12),
    "L40S": (362e12, 0.864e12),
    "L4": (121e12, 0.3e12),
    "A10": (125e12, 0.6e12),
}
MFU_FLOOR = 0.20  # below this the profile and the bound analysis are printed
TARGET_RATIO = 0.98


def log(msg: str) -> None:
    """One readable line, at once."""
    print(msg, flush=True)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def check_params(device: str, quick: bool, **over: Any) -> Params:
    """params.yaml for a tiny synthetic run on `device`, tracking off, with `over` on top."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    h, w = (32, 48) if quick else (96, 128)
    tiny = {
        "data": {"source": "synthetic", "synthetic": {"n_images": 12 if quick else 32}},
        "preprocess": {"height": h, "width": w, "val_fraction": 0.25},
        "model": {"base_channels": 8 if quick else 16, "depth": 2 if quick else 4},
        "train": {"epochs": 2, "batch_size": 2 if quick else 4, "warmup_epochs": 1, "device": device},
        "eval": {"batch_size": 4, "n_examples": 2},
        "mlflow": {"enabled": False},
    }
    return params_from_dict(_merge(_merge(raw, tiny), over))


def _finite(values: dict) -> bool:
    return all(math.isfinite(v) for v in values.values() if isinstance(v, float))


def check_e2e(device: str, quick: bool, work: Path) -> dict:
    """Synthetic data -> preprocess -> train -> evaluate through the library; finite metrics."""
    params = check_params(device, quick)
    root = work / "e2e"
    t0 = time.perf_counter()
    download.run(params, root)
    preprocess.run(params, root)
    result = training.run(params, root)
    metrics = evaluate.run(params, root, device=device)
    amp = training.uses_bf16(params.train.amp, torch.device(device))
    scored = {k: metrics[k] for k in ("abs_rel", "rmse", "delta1")}
    ok = _finite(scored) and result["best_epoch"] is not None and (amp or device != "cuda")
    log(f"e2e: {time.perf_counter() - t0:.1f} s; best epoch {result['best_epoch']}; test {scored}; "
        f"precision {'bf16' if amp else 'float32'}")  # fmt: skip
    return {"ok": ok, "bf16": amp, **scored}


def _default_params(device: str, quick: bool, **over: dict) -> Params:
    """The real default model (params.yaml), or a tiny one with --quick, on `device`, tracking off."""
    params = check_params(device, quick)
    if not quick:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        params = timing.with_overrides(params, model=raw["model"])  # the default U-Net, not the e2e's tiny one
    return timing.with_overrides(params, **over) if over else params


def _size(quick: bool) -> tuple[int, int]:
    return (32, 48) if quick else (240, 320)


def check_throughput(device: str, quick: bool) -> dict:
    """Loop vs bare step at bf16 and float32 (default model, 240x320, batch 16)."""
    out: dict[str, Any] = {}
    h, w = _size(quick)
    batch = 2 if quick else 16
    images = batch * (2 if quick else 16)
    data = timing.synthetic_split(images, h, w, torch.device(device))
    for amp in ("bf16", "off"):
        params = _default_params(device, quick, train={"amp": amp, "batch_size": batch})
        tr = timing.trainer_for(params, torch.device(device), images // batch)
        gen = torch.Generator(device=device).manual_seed(0)
        rgb, depth = timing.ready_batch(data, batch, torch.device(device))
        c = timing.compare(
            lambda tr=tr, gen=gen: timing.time_loop(tr, data, batch, gen, True),
            lambda tr=tr, rgb=rgb, depth=depth: timing.time_bare(tr, rgb, depth, images // batch),
            images, 2 if quick else 5, log,
        )  # fmt: skip
        log(f"throughput {amp}: loop {c.loop_images_per_s:.1f} img/s, bare {c.bare_images_per_s:.1f} img/s, "
            f"ratio {c.ratio:.4f} (target >= {TARGET_RATIO})")  # fmt: skip
        out[amp] = {"loop_images_per_s": round(c.loop_images_per_s, 2), "bare_images_per_s":
                    round(c.bare_images_per_s, 2), "ratio": round(c.ratio, 4)}  # fmt: skip
    out["ok"] = all(math.isfinite(v["ratio"]) for v in out.values() if isinstance(v, dict))
    out["meets_target"] = out["bf16"]["ratio"] >= TARGET_RATIO
    return out


def device_peaks(device: torch.device) -> tuple[str, float | None, float | None]:
    """(device name, datasheet dense bf16 FLOP/s, HBM B/s); None where unknown (the CPU)."""
    if device.type != "cuda":
        return "cpu", None, None
    name = torch.cuda.get_device_name(device)
    for key, (flops, bw) in PEAKS.items():
        if key in name:
            return name, flops, bw
    return name, None, None


def measured_matmul_peak(device: torch.device, n: int = 8192) -> float | None:
    """FLOP/s of an n^3 bf16 matrix product on random data (mean of 10 after 3 warm-ups); None on the CPU."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    timing.sync(device)
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    timing.sync(device)
    return 2 * n**3 * 10 / (time.perf_counter() - t)


def step_flops(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor) -> int:
    """FLOPs of one forward + backward (the optimiser's elementwise update is negligible)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with tr.autocast():
            loss = tr.loss_fn(tr.model(tr.layout(rgb)), depth, rgb)
        loss.backward()
    tr.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def conv_intensity(net: torch.nn.Module, rgb: torch.Tensor, bytes_per_value: int) -> list[dict]:
    """Each Conv2d's forward FLOPs, bytes moved (input + output + weight) and FLOP/byte, largest first."""
    rows: list[dict] = []

    def hook(mod: torch.nn.Conv2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        flops = 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw
        moved = (inp[0].numel() + out.numel() + mod.weight.numel()) * bytes_per_value
        rows.append({"shape": f"{mod.in_channels}->{mod.out_channels} k{kh} @ {out.shape[-2]}x{out.shape[-1]}",
                     "flops": flops, "bytes": moved, "intensity": flops / moved})  # fmt: skip

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            net(rgb)
    finally:
        for h in handles:
            h.remove()
    return sorted(rows, key=lambda r: -r["flops"])


def top_kernels(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor, steps: int = 5, n: int = 10) -> list[dict]:
    """The `n` kernels with the most self device time over `steps` training steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            optimise(tr, rgb, depth)
        timing.sync(tr.device)
    events = prof.key_averages()

    def self_time(e: Any) -> float:
        dev = getattr(e, "self_device_time_total", None)
        if dev is None:
            dev = getattr(e, "self_cuda_time_total", 0.0)
        return float(dev) if tr.device.type == "cuda" else float(e.self_cpu_time_total)

    total = sum(self_time(e) for e in events) or 1.0
    ranked = sorted(events, key=self_time, reverse=True)[:n]
    return [{"name": e.key[:90], "share": round(self_time(e) / total, 4), "calls": e.count} for e in ranked]


def check_mfu(device: str, quick: bool) -> dict:
    """FLOPs per step, images/s, MFU and peak memory per batch size; the profile where MFU is low."""
    dev = torch.device(device)
    name, peak, bandwidth = device_peaks(dev)
    measured = measured_matmul_peak(dev)
    log(f"device {name}: datasheet dense bf16 peak {peak and peak / 1e12} TFLOP/s, "
        f"measured bf16 matmul {measured and round(measured / 1e12)} TFLOP/s; MFU uses the datasheet peak")  # fmt: skip
    h, w = _size(quick)
    rows = []
    for batch in (2, 4) if quick else (8, 16, 32, 64):
        params = _default_params(device, quick, train={"amp": "bf16" if dev.type == "cuda" else "off",
                                                       "batch_size": batch})  # fmt: skip
        tr = timing.trainer_for(params, dev, 10)
        data = timing.synthetic_split(batch, h, w, dev)
        rgb, depth = timing.ready_batch(data, batch, dev)
        flops = step_flops(tr, rgb, depth)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        steps = 3 if quick else 20
        timing.time_bare(tr, rgb, depth, 2)  # warm-up
        t = timing.time_bare(tr, rgb, depth, steps)
        achieved = flops * steps / t.wall
        memory = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None
        row = {
            "batch": batch,
            "gflops_per_step": round(flops / 1e9, 2),
            "images_per_s": round(batch * steps / t.wall, 1),
            "tflops_per_s": round(achieved / 1e12, 3),
            "mfu": round(achieved / peak, 4) if peak else None,
            "mfu_measured_peak": round(achieved / measured, 4) if measured else None,
            "peak_memory_gb": round(memory, 3) if memory is not None else None,
        }
        log(f"batch {batch}: {row['gflops_per_step']} GFLOP/step, {row['images_per_s']} img/s, "
            f"{row['tflops_per_s']} TFLOP/s, MFU {row['mfu']}, peak memory {row['peak_memory_gb']} GB")  # fmt: skip
        rows.append(row)
        del tr, data
    out: dict[str, Any] = {"device": name, "peak_flops": peak, "measured_matmul_flops": measured, "batches": rows}
    default = next(r for r in rows if r["batch"] == (4 if quick else 16))
    if default["mfu"] is None or default["mfu"] < MFU_FLOOR:
        out["bound"] = explain_low_mfu(device, quick, peak, bandwidth)
    out["ok"] = all(r["images_per_s"] > 0 for r in rows)
    return out


def explain_low_mfu(device: str, quick: bool, peak: float | None, bandwidth: float | None) -> dict:
    """Top kernels and the convolutions' arithmetic intensity against the ridge point peak / bandwidth."""
    dev = torch.device(device)
    h, w = _size(quick)
    batch = 4 if quick else 16
    params = _default_params(device, quick, train={"amp": "bf16" if dev.type == "cuda" else "off", "batch_size": batch})
    tr = timing.trainer_for(params, dev, 10)
    rgb, depth = timing.ready_batch(timing.synthetic_split(batch, h, w, dev), batch, dev)
    kernels = top_kernels(tr, rgb, depth, steps=2 if quick else 5)
    log("top kernels by self device time:")
    for k in kernels:
        log(f"  {k['share']:6.1%}  x{k['calls']:<4d} {k['name']}")
    convs = conv_intensity(tr.net, tr.layout(rgb), 2 if dev.type == "cuda" else 4)
    ridge = peak / bandwidth if peak and bandwidth else None
    total = sum(c["flops"] for c in convs)
    below = sum(c["flops"] for c in convs if ridge and c["intensity"] < ridge)
    log(f"convolutions: {len(convs)}; ridge point {ridge and round(ridge)} FLOP/byte "
        f"(peak / HBM bandwidth); {below / total:.0%} of conv FLOPs in layers below it (memory-bound)")  # fmt: skip
    for c in convs[:8]:
        log(f"  {c['shape']:28s} {c['flops'] / 1e9:8.2f} GFLOP  {c['intensity']:7.1f} FLOP/byte")
    return {"top_kernels": kernels, "ridge_flop_per_byte": ridge, "conv_flops_share_below_ridge":
            round(below / total, 4) if ridge else None, "convs": convs[:8]}  # fmt: skip


def check_compile(device: str, quick: bool) -> dict:
    """Compile time (first step minus a steady one) and steady-state speed-up over eager."""
    if quick and device == "cpu":
        log("compile: not run with --device cpu --quick (inductor takes ~1 min on 2 cores for this net)")
        return {"ok": True, "ran": False}
    dev = torch.device(device)
    h, w = _size(quick)
    batch = 16
    steady = {}
    first = None
    for compiled in (False, True):
        params = _default_params(device, quick, train={"compile": compiled, "batch_size": batch})
        tr = timing.trainer_for(params, dev, 10)
        rgb, depth = timing.ready_batch(timing.synthetic_split(batch, h, w, dev), batch, dev)
        t_first = timing.time_bare(tr, rgb, depth, 1).wall
        timing.time_bare(tr, rgb, depth, 3)
        steady[compiled] = timing.time_bare(tr, rgb, depth, 20).wall / 20
        if compiled:
            first = t_first
    compile_s = first - steady[True] if first is not None else float("nan")
    speedup = steady[False] / steady[True]
    log(f"compile: {compile_s:.1f} s to compile; steady step {steady[False] * 1e3:.1f} ms eager, "
        f"{steady[True] * 1e3:.1f} ms compiled: speed-up {speedup:.2f}x")  # fmt: skip
    return {"ok": math.isfinite(speedup), "ran": True, "compile_s": round(compile_s, 1), "speedup": round(speedup, 3)}


def _state(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "models" / "checkpoints" / "last.pt", weights_only=True)["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[bool, float]:
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    return all(torch.equal(a[k], b[k]) for k in a), diff


def _processed_root(work: Path, name: str) -> Path:
    """A run folder with a copy of the e2e's processed data (so runs never share outputs)."""
    root = work / name
    shutil.copytree(work / "e2e" / "data", root / "data")
    return root


def check_deterministic(device: str, quick: bool, work: Path) -> dict:
    """Two runs with train.deterministic (and augmentation on) give bit-identical weights."""
    params = check_params(device, quick, train={"deterministic": True, "epochs": 1})
    roots = [_processed_root(work, f"det{i}") for i in (0, 1)]
    for root in roots:
        training.run(params, root)
    same, diff = _same(_state(roots[0]), _state(roots[1]))
    log(f"deterministic: weights {'identical' if same else f'differ (max |diff| {diff:.3g})'}")
    return {"ok": same, "max_abs_diff": diff}


def _stage_env() -> dict[str, str]:
    """The environment of a stage subprocess: this repository importable, one CPU thread."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def check_ddp(device: str, quick: bool, work: Path) -> dict:
    """`torchrun --nproc_per_node 1 -m stages.train` (NCCL on CUDA, gloo on the CPU) matches a plain run.

    Both run as subprocesses with the same environment (one CPU thread), so the only
    difference is DDP: its gradient all-reduce over one rank.
    """
    over = {"train": {"deterministic": True, "augment": False, "epochs": 1}, "model": {"dropout": 0.0}}
    params = check_params(device, quick, **over)
    roots = {"plain": _processed_root(work, "plain"), "ddp": _processed_root(work, "ddp")}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmds = {"plain": [sys.executable, "-m", "stages.train"], "ddp": [*torchrun, "-m", "stages.train"]}
    for name, root in roots.items():
        (root / "params.yaml").write_text(yaml.safe_dump(to_yaml_dict(params), sort_keys=False))
        proc = subprocess.run(cmds[name], cwd=root, env=_stage_env(), capture_output=True, text=True, timeout=300)
        if proc.returncode:
            log(f"ddp: the {name} run failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
            return {"ok": False, "failed": name, "returncode": proc.returncode}
    backend = "nccl" if device == "cuda" else "gloo"
    a, b = _state(roots["plain"]), _state(roots["ddp"])
    same, diff = _same(a, b)
    close = all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-6) for k in a)
    log(f"ddp ({backend}, 1 rank): weights {'identical' if same else f'max |diff| {diff:.3g}'} vs a plain run")
    return {"ok": close, "identical": same, "max_abs_diff": diff, "backend": backend}


def check_pose(device: str, quick: bool) -> dict:
    """Alignment pairs/s at 240x320 (camera rate is the goal: >= 30 pairs/s) for intensities and the default U-Net.

    Needs kornia (pipeline/pose/se3.py): on a machine without it, carry its wheel or site-packages folder.
    """
    import pose as pose_bench  # benchmarks/pose.py

    from pipeline.pose import AlignOptions
    from pipeline.pose.pairs import synthetic_pairs

    size, batch = ((64, 80), 2) if quick else ((240, 320), 32)
    dev = torch.device(device)
    pairs = pose_bench._on(synthetic_pairs(list(range(batch)), size), dev)
    params = _default_params(device, quick)
    torch.manual_seed(0)
    net = build_model(params.model).to(dev).eval()
    rows = {}
    for kind, model in (("rgb", None), ("encoder", net)):
        rows[kind] = pose_bench.speed(model, pairs, kind, AlignOptions(), dev, repeats=1 if quick else 3)
        log(f"pose {kind} at {size[0]}x{size[1]}, batch {batch}: {rows[kind]['pairs_per_s']} pairs/s "
            f"(align alone {rows[kind]['align_pairs_per_s']}/s)")  # fmt: skip
    return {"ok": all(r["pairs_per_s"] > 0 for r in rows.values()), "size": list(size), "batch": batch, **rows}


def main() -> int:
    """Runs every section, prints the JSON line, and returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (to test this script)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a test of the script, not a measurement")
    ap.add_argument("--only", nargs="*", help="sections to run (default: all; deterministic and ddp add e2e)")
    add_record_flag(ap, "gpu_check")
    a = ap.parse_args()
    rec = Recording.begin("gpu_check", a.record)
    if a.device == "cuda" and not torch.cuda.is_available():
        log(f"CUDA is not available (torch {torch.__version__}): nothing to check on this machine")
        print(json.dumps({"cuda": False, "torch": torch.__version__}))
        return 0
    log(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {device_peaks(torch.device(a.device))[0]}")
    sections: dict[str, Callable[[Path], dict]] = {
        "e2e": lambda work: check_e2e(a.device, a.quick, work),
        "throughput": lambda work: check_throughput(a.device, a.quick),
        "mfu": lambda work: check_mfu(a.device, a.quick),
        "compile": lambda work: check_compile(a.device, a.quick),
        "deterministic": lambda work: check_deterministic(a.device, a.quick, work),
        "ddp": lambda work: check_ddp(a.device, a.quick, work),
        "pose": lambda work: check_pose(a.device, a.quick),
    }
    results: dict[str, Any] = {"cuda": a.device == "cuda", "torch": torch.__version__, "quick": a.quick}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        wanted = set(a.only or sections)
        if wanted & {"deterministic", "ddp"}:
            wanted.add("e2e")  # they train on its processed data
        for name, fn in sections.items():
            if name not in wanted:
                continue
            t = time.perf_counter()
            log(f"--- {name}")
            try:
                results[name] = fn(Path(tmp))
            except Exception as e:  # one failed section must not hide the others' figures
                log(f"{name} FAILED: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
                results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            results[name]["seconds"] = round(time.perf_counter() - t, 1)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["ok"] = all(v.get("ok", False) for v in results.values() if isinstance(v, dict))
    log(f"--- {'all checks passed' if results['ok'] else 'some checks FAILED'} in {results['seconds']} s")
    rec.finish(results)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
