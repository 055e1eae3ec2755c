"""Furniture for the synthetic scenes: items built from axis-aligned boxes, and where they go.

Each builder returns parts in the item's local frame: u along the wall it stands
against, y up, v away from that wall (v = 0 touches the wall). `sample_furniture`
places 2-5 items per room against walls (or free-standing) without overlaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.synthetic.textures import Material, jitter_colour


@dataclass(frozen=True)
class Box:
    """An axis-aligned furniture part."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material


Part = tuple[tuple[float, float, float], tuple[float, float, float], Material]  # local (u, y, v) lo, hi
Rng = np.random.Generator

_WOODS = ((0.55, 0.38, 0.22), (0.70, 0.55, 0.38), (0.35, 0.22, 0.14), (0.80, 0.68, 0.50))
_PAINTS = ((0.92, 0.92, 0.90), (0.25, 0.25, 0.27), (0.55, 0.62, 0.70), (0.80, 0.75, 0.65))
_FABRICS = ((0.45, 0.30, 0.30), (0.30, 0.38, 0.50), (0.55, 0.55, 0.50), (0.35, 0.45, 0.35), (0.75, 0.70, 0.60))
_WHITE = Material((0.93, 0.93, 0.92))
_DARK = Material((0.06, 0.06, 0.07))
_SURFACES = ("wood", "doors", "drawers", "carpet")  # patterns of tops that get clutter (not beds, baths)


def _pick(rng: Rng, options: tuple, pattern: str, scale: float = 0.2) -> Material:
    return Material(jitter_colour(rng, options[rng.integers(len(options))], 0.04), pattern, scale)


def _p(u0: float, y0: float, v0: float, u1: float, y1: float, v1: float, m: Material) -> Part:
    return (u0, y0, v0), (u1, y1, v1), m


def _table(w: float, d: float, h: float, m: Material, leg: float = 0.05) -> list[Part]:
    legs = [_p(u, 0, v, u + leg, h - 0.04, v + leg, m) for u in (0.03, w - leg - 0.03) for v in (0.03, d - leg - 0.03)]
    return [_p(0, h - 0.04, 0, w, h, d, m), *legs]


def _chair(u: float, v: float, back_v: float, m: Material) -> list[Part]:
    """A 0.45 m chair at (u, v); its back is on the side `back_v` (0 or 1) of the seat."""
    parts = _table(0.45, 0.45, 0.46, m, 0.04)
    bv = 0.0 if back_v == 0 else 0.41
    parts.append(_p(0, 0.46, bv, 0.45, 0.92, bv + 0.04, m))
    return [((a[0] + u, a[1], a[2] + v), (b[0] + u, b[1], b[2] + v), mm) for a, b, mm in parts]


def bed(rng: Rng) -> list[Part]:
    """The boxes of a bed, sized and coloured at random within typical dimensions."""
    w, d = rng.uniform(1.0, 1.8), rng.uniform(1.9, 2.1)
    wood, duvet = _pick(rng, _WOODS, "wood", 0.08), _pick(rng, _FABRICS, "fabric")
    pillow = Material((0.92, 0.92, 0.90), "fabric")
    return [
        _p(0, 0, 0, w, 0.32, d, wood),
        _p(0, 0, 0, w, 1.05, 0.07, wood),  # headboard
        _p(0.04, 0.32, 0.45, w - 0.04, 0.58, d - 0.02, duvet),
        _p(0.12, 0.32, 0.1, w - 0.12, 0.68, 0.45, pillow),
    ]


def cabinet(rng: Rng, w: tuple = (0.8, 1.6), h: tuple = (0.8, 2.1), d: float = 0.55) -> list[Part]:
    """The boxes of a cabinet, sized and coloured at random within typical dimensions."""
    w_, h_ = rng.uniform(*w), rng.uniform(*h)
    m = _pick(rng, _WOODS + _PAINTS, "doors" if h_ > 1.2 else "drawers", 0.45 if h_ > 1.2 else 0.22)
    return [_p(0, 0, 0, w_, h_, d, m)]


def bookshelf(rng: Rng) -> list[Part]:
    """The boxes of a bookshelf, sized and coloured at random within typical dimensions."""
    w, h = rng.uniform(0.8, 1.2), rng.uniform(1.8, 2.1)
    return [_p(0, 0, 0, w, h, 0.32, _pick(rng, _WOODS + _PAINTS, "books", rng.uniform(0.3, 0.4)))]


def desk(rng: Rng) -> list[Part]:
    """The boxes of a desk, sized and coloured at random within typical dimensions."""
    w, d = rng.uniform(1.2, 1.6), rng.uniform(0.6, 0.75)
    parts = _table(w, d, 0.74, _pick(rng, _WOODS + _PAINTS, "wood", 0.1))
    if rng.random() < 0.7:  # a monitor on a stand
        c = w / 2
        parts += [_p(c - 0.05, 0.74, 0.12, c + 0.05, 0.86, 0.2, _DARK)]
        parts += [_p(c - 0.28, 0.86, 0.14, c + 0.28, 1.2, 0.18, Material((0.02, 0.02, 0.03), "screen"))]
    return parts


def sofa(rng: Rng) -> list[Part]:
    """The boxes of a sofa, sized and coloured at random within typical dimensions."""
    w, d = rng.uniform(1.8, 2.6), rng.uniform(0.85, 0.95)
    m = _pick(rng, _FABRICS, "fabric")
    return [
        _p(0, 0, 0, w, 0.42, d, m),
        _p(0, 0.42, 0, w, 0.85, 0.22, m),  # back
        _p(0, 0.42, 0.22, 0.2, 0.62, d, m),  # arms
        _p(w - 0.2, 0.42, 0.22, w, 0.62, d, m),
    ]


def tv_stand(rng: Rng) -> list[Part]:
    """The boxes of a tv stand, sized and coloured at random within typical dimensions."""
    w = rng.uniform(1.2, 1.8)
    tw = rng.uniform(0.9, min(1.4, w))
    return [
        _p(0, 0, 0, w, 0.5, 0.42, _pick(rng, _WOODS + _PAINTS, "drawers", 0.25)),
        _p((w - tw) / 2, 0.5, 0.15, (w + tw) / 2, 0.5 + 0.58 * tw, 0.21, Material((0.02, 0.02, 0.03), "screen")),
    ]


def kitchen_counter(rng: Rng) -> list[Part]:
    """The boxes of a kitchen counter, sized and coloured at random within typical dimensions."""
    w = rng.uniform(1.8, 3.0)
    body, top = _pick(rng, _WOODS + _PAINTS, "doors", 0.5), _pick(rng, ((0.2, 0.2, 0.2), (0.85, 0.85, 0.8)), "carpet")
    return [
        _p(0, 0, 0, w, 0.86, 0.6, body),
        _p(0, 0.86, 0, w, 0.9, 0.63, top),
        _p(0, 1.45, 0, w, 2.15, 0.35, body),  # wall cabinets
    ]


def fridge(rng: Rng) -> list[Part]:
    """The boxes of a fridge, sized and coloured at random within typical dimensions."""
    return [
        _p(0, 0, 0, 0.7, rng.uniform(1.7, 1.9), 0.7, _pick(rng, ((0.9, 0.9, 0.9), (0.6, 0.62, 0.64)), "doors", 1.2))
    ]


def dining_set(rng: Rng) -> list[Part]:
    """The boxes of a dining set, sized and coloured at random within typical dimensions."""
    w, d = rng.uniform(1.2, 1.8), rng.uniform(0.8, 1.0)
    wood = _pick(rng, _WOODS, "wood", 0.1)
    parts = _table(w, d, 0.75, wood)
    for u in np.linspace(0, w, int(rng.integers(1, 3)) + 2)[1:-1]:
        parts += _chair(u - 0.22, -0.5, 0, wood) + _chair(u - 0.22, d + 0.05, 1, wood)
    return parts


def coffee_table(rng: Rng) -> list[Part]:
    """The boxes of a coffee table, sized and coloured at random within typical dimensions."""
    return _table(rng.uniform(0.9, 1.2), rng.uniform(0.5, 0.7), rng.uniform(0.4, 0.46), _pick(rng, _WOODS, "wood", 0.1))


def office_chair(rng: Rng) -> list[Part]:
    """The boxes of a office chair, sized and coloured at random within typical dimensions."""
    m = _pick(rng, ((0.1, 0.1, 0.12), (0.3, 0.32, 0.4)), "fabric")
    return [
        _p(0.2, 0, 0.2, 0.3, 0.45, 0.3, _DARK),
        _p(0, 0.45, 0, 0.5, 0.53, 0.5, m),
        _p(0, 0.53, 0.44, 0.5, 1.0, 0.5, m),
    ]


def bathtub(rng: Rng) -> list[Part]:
    """The boxes of a bathtub, sized and coloured at random within typical dimensions."""
    w = rng.uniform(1.5, 1.7)
    return [_p(0, 0, 0, w, 0.55, 0.75, _WHITE)]


def toilet(rng: Rng) -> list[Part]:
    """The boxes of a toilet, sized and coloured at random within typical dimensions."""
    return [_p(0, 0, 0.15, 0.4, 0.42, 0.7, _WHITE), _p(0, 0, 0, 0.4, 0.8, 0.2, _WHITE)]


def sink(rng: Rng) -> list[Part]:
    """The boxes of a sink, sized and coloured at random within typical dimensions."""
    w = rng.uniform(0.6, 1.0)
    return [
        _p(0, 0, 0, w, 0.82, 0.5, _pick(rng, _WOODS + _PAINTS, "doors", 0.5)),
        _p(0, 0.82, 0, w, 0.88, 0.52, _WHITE),
    ]


# name -> (builder, free-standing?)
ITEMS: dict[str, tuple[Callable[[Rng], list[Part]], bool]] = {
    "bed": (bed, False),
    "cabinet": (cabinet, False),
    "nightstand": (lambda r: cabinet(r, (0.4, 0.5), (0.5, 0.6), 0.4), False),
    "bookshelf": (bookshelf, False),
    "desk": (desk, False),
    "sofa": (sofa, False),
    "tv_stand": (tv_stand, False),
    "counter": (kitchen_counter, False),
    "fridge": (fridge, False),
    "dining_set": (dining_set, True),
    "coffee_table": (coffee_table, True),
    "office_chair": (office_chair, True),
    "bathtub": (bathtub, False),
    "toilet": (toilet, False),
    "sink": (sink, False),
}
# scene type -> (items always present, items drawn to reach 2-5 in all)
CATALOGUE = {
    "bedroom": (("bed",), ("nightstand", "nightstand", "cabinet", "cabinet", "desk", "bookshelf")),
    "kitchen": (("counter",), ("fridge", "counter", "dining_set", "cabinet")),
    "living_room": (("sofa",), ("coffee_table", "tv_stand", "bookshelf", "sofa", "cabinet")),
    "bathroom": (("bathtub", "toilet"), ("sink", "cabinet")),
    "dining_room": (("dining_set",), ("cabinet", "cabinet", "bookshelf")),
    "office": (("desk",), ("desk", "bookshelf", "cabinet", "office_chair", "office_chair")),
}


def _clutter(rng: Rng, parts: list[Part]) -> list[Part]:
    """Adds 0-3 small objects (books, boxes, vases) on each table top, counter or cabinet top."""
    out = list(parts)
    for lo, hi, m in parts:
        w, d, top = hi[0] - lo[0], hi[2] - lo[2], hi[1]
        if not (0.4 <= top <= 1.3 and w > 0.35 and d > 0.3 and m.pattern in _SURFACES):
            continue
        for _ in range(rng.integers(0, 4)):
            sw, sd, sh = (
                rng.uniform(0.06, min(0.35, w / 2)),
                rng.uniform(0.06, min(0.3, d / 2)),
                rng.uniform(0.04, 0.35),
            )
            u, v = rng.uniform(lo[0], hi[0] - sw), rng.uniform(lo[2], hi[2] - sd)
            m = Material(jitter_colour(rng, tuple(rng.uniform(0.1, 0.9, 3)), 0.0), "flat")
            out.append(((u, top, v), (u + sw, top + sh, v + sd), m))
    return out


def _to_world(parts: list[Part], mode: int, s: float, size: tuple, free_at: tuple[float, float]) -> list[Box]:
    """Local parts to world boxes: against wall `mode` (0..3) at offset `s`, or free (mode 4/5 = rotated)."""
    W, _, D = size
    fx, fz = free_at

    def xz(u: float, v: float) -> tuple[float, float]:
        return [(s + u, v), (s + u, D - v), (v, s + u), (W - v, s + u), (fx + u, fz + v), (fx + v, fz + u)][mode]

    boxes = []
    for lo, hi, m in parts:
        (x0, z0), (x1, z1) = xz(lo[0], lo[2]), xz(hi[0], hi[2])
        boxes.append(Box((min(x0, x1), lo[1], min(z0, z1)), (max(x0, x1), hi[1], max(z0, z1)), m))
    return boxes


def _footprint(boxes: list[Box]) -> tuple[float, float, float, float]:
    return (
        min(b.lo[0] for b in boxes),
        min(b.lo[2] for b in boxes),
        max(b.hi[0] for b in boxes),
        max(b.hi[2] for b in boxes),
    )


def _place(rng: Rng, parts: list[Part], free: bool, size: tuple, taken: list[tuple]) -> list[Box] | None:
    """Tries random spots until the item's footprint fits inside the room and clear of `taken`."""
    W, _, D = size
    umin, vmin = min(p[0][0] for p in parts), min(p[0][2] for p in parts)
    parts = [((a[0] - umin, a[1], a[2] - vmin), (b[0] - umin, b[1], b[2] - vmin), m) for a, b, m in parts]
    width = max(p[1][0] for p in parts)
    for _ in range(30):
        mode = int(rng.integers(4, 6) if free else rng.integers(4))
        length = W if mode < 2 else D
        s = float(rng.uniform(0.02, max(0.03, length - width - 0.02)))
        boxes = _to_world(parts, mode, s, size, (float(rng.uniform(0.6, W - 0.6)), float(rng.uniform(0.6, D - 0.6))))
        x0, z0, x1, z1 = fp = _footprint(boxes)
        margin = 0.6 if free else 0.0  # walk-around space for free-standing items
        inside = x0 >= margin - 1e-6 and z0 >= margin - 1e-6 and x1 <= W - margin and z1 <= D - margin
        clear = all(x0 > t[2] + 0.1 or x1 < t[0] - 0.1 or z0 > t[3] + 0.1 or z1 < t[1] - 0.1 for t in taken)
        if inside and clear:
            taken.append(fp)
            return boxes
    return None


def sample_furniture(rng: Rng, scene_type: str, size: tuple[float, float, float]) -> tuple[Box, ...]:
    """2-5 items typical of `scene_type`, placed without overlaps; returns all their boxes."""
    required, optional = CATALOGUE[scene_type]
    n_extra = min(len(optional), int(rng.integers(max(0, 2 - len(required)), 6 - len(required))))
    names = list(required) + [optional[i] for i in rng.choice(len(optional), n_extra, replace=False)]
    taken: list[tuple] = []
    boxes: list[Box] = []
    for name in names:
        builder, free = ITEMS[name]
        placed = _place(rng, _clutter(rng, builder(rng)), free, size, taken)
        boxes += placed or []
    return tuple(boxes)
