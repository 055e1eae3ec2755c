"""Size and speed of each encoder's depth network (run on demand; not a test).

    python benchmarks/encoders.py                                   # the checked encoders, 240x320
    python benchmarks/encoders.py --encoders unet resnet18 --repeats 5 --threads 2

For each `model.encoder` (random init, params.yaml's other model params): parameters
(encoder and total), FLOPs of one forward pass per image at `--height`x`--width` counted
by `torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts as 2 FLOPs; convs
and matmuls only), and inference images/s on the current CPU (eval mode, float32,
channels_last as training uses, batch `--batch-size`, the fastest of `--repeats` timed
passes after one warm-up: other load on the machine only ever slows a pass down). The
last line printed is a JSON list with one object per encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.model import build_model  # noqa: E402

CHECKED = ["unet", "resnet18", "resnet34", "resnet50", "efficientnet_b0", "convnext_tiny"]


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--encoders", nargs="+", default=CHECKED)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_record_flag(ap, "encoders")
    return ap.parse_args()


def measure(name: str, a: argparse.Namespace, base: object) -> dict[str, object]:
    """Parameters, FLOPs per image and CPU images/s of the network with encoder `name`."""
    cfg = dataclasses.replace(base, encoder=name, pretrained=False, weights=None)  # type: ignore[type-var]
    torch.manual_seed(0)
    net = build_model(cfg).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    encoder = net.encoder if hasattr(net, "encoder") else None
    n_encoder = sum(p.numel() for p in encoder.parameters()) if encoder is not None else None
    one = torch.rand(1, 3, a.height, a.width).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(one)
    x = torch.rand(a.batch_size, 3, a.height, a.width).contiguous(memory_format=torch.channels_last)
    best = 0.0
    with torch.no_grad():
        net(x)  # warm-up: oneDNN primitive creation, allocator
        for _ in range(a.repeats):
            start = time.perf_counter()
            net(x)
            best = max(best, a.batch_size / (time.perf_counter() - start))
    return {
        "encoder": name,
        "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        "encoder_params_m": round(n_encoder / 1e6, 2) if n_encoder is not None else None,
        "gflops_per_image": round(counter.get_total_flops() / 1e9, 2),
        "cpu_images_per_s": round(best, 2),
    }


def main() -> None:
    """Measures every encoder in `--encoders` and prints one line each, then the JSON list."""
    a = _args()
    rec = Recording.begin("encoders", a.record)
    if a.threads:
        torch.set_num_threads(a.threads)
    base = load_params(a.params).model
    print(f"{a.height}x{a.width}, batch {a.batch_size}, {torch.get_num_threads()} threads, "
          f"base_channels {base.base_channels}", flush=True)  # fmt: skip
    rows = []
    for name in a.encoders:
        rows.append(measure(name, a, base))
        print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    rec.finish(rows)


if __name__ == "__main__":
    main()
