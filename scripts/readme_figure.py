"""The README's picture: RGB, ground truth and prediction of a few test frames of a run.

    .venv/bin/python scripts/readme_figure.py                    # from the last run (make demo)
    .venv/bin/python scripts/readme_figure.py --frames 4 --out docs/assets/demo_strip.png

Reads the example frames evaluate keeps (`paths.predictions`, `reports/predictions.npz`:
the same frames as the report's qualitative grid) and composes one row per kind (RGB,
ground truth, prediction) and one column per frame, in the report's colours
(`pipeline.colours.colourise`: viridis on the fixed 0 to `eval.max_depth` scale, black
where the ground truth has no measurement). Pixels are drawn as they are (no figure, no
axes), so the PNG stays small; it is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.colours import DEPTH_CMAP, colourise  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402

GAP = 4  # white pixels between panels


def strip(examples: dict[str, np.ndarray], frames: int, max_depth: float) -> np.ndarray:
    """(rows*H + gaps, frames*W + gaps, 3) uint8: RGB, ground truth, prediction rows for the first `frames`."""
    rgb, gt, pred = examples["rgb"][:frames], examples["gt"][:frames], examples["pred"][:frames]  # (K,H,W,3), (K,H,W)
    k, h, w = gt.shape
    rows = [
        list(rgb),
        [colourise(g, DEPTH_CMAP, max_depth) for g in gt],
        [colourise(p, DEPTH_CMAP, max_depth) for p in pred],
    ]
    out = np.full((3 * h + 2 * GAP, k * w + (k - 1) * GAP, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            out[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = panel
    return out


def main() -> None:
    """Writes the strip PNG from the run's kept examples."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--predictions", help="default: paths.predictions of --params")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "docs" / "assets" / "demo_strip.png"))
    a = ap.parse_args()
    params = load_params(a.params)
    src = Path(a.predictions) if a.predictions else REPO / params.paths.predictions
    with np.load(src) as f:
        examples = {k: f[k] for k in ("rgb", "gt", "pred")}
    image = Image.fromarray(strip(examples, a.frames, params.eval.max_depth))
    with atomic_path(Path(a.out)) as tmp, open(tmp, "wb") as f:
        image.save(f, format="PNG", optimize=True)
    print(f"{a.out}: {image.width}x{image.height}, {Path(a.out).stat().st_size / 1024:.0f} KB from {src}")


if __name__ == "__main__":
    main()
