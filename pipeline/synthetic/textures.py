"""Procedural surface textures in metric units, so their apparent scale is a depth cue.

Every pattern maps surface coordinates (u, v) in metres, relative to the face or
decal's corner, with the face's extent (eu, ev), to an albedo (n, 3) in 0..1.
Noise is a hash of integer lattice points, so a texture is a pure function of
(coordinates, seed): no state, no per-pixel Python loops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    """Surface appearance: a base colour (0..1 RGB albedo) and a procedural pattern."""

    colour: tuple[float, float, float]
    pattern: str = "flat"  # a key of PATTERNS
    scale: float = 0.2  # metres: the pattern's period (plank width, tile size, shelf height)


def jitter_colour(
    rng: np.random.Generator, base: tuple[float, float, float] | np.ndarray, jitter: float = 0.06
) -> tuple:
    """`base` with random brightness (sd `jitter`) and a slighter random tint, kept in 0.03..0.97."""
    c = np.asarray(base) * (1 + rng.normal(0, jitter)) + rng.normal(0, jitter / 3, 3)
    return tuple(float(v) for v in np.clip(c, 0.03, 0.97))


Arr = np.ndarray
_BOOK_COLOURS = np.array(
    [[0.55, 0.1, 0.1], [0.1, 0.2, 0.45], [0.15, 0.4, 0.2], [0.8, 0.7, 0.4], [0.9, 0.9, 0.85], [0.2, 0.2, 0.2]]
)


def hash01(i: Arr, j: Arr, seed: int) -> Arr:
    """A uniform 0..1 value per integer lattice point (i, j); int64 overflow wraps, as wanted."""
    h = i.astype(np.int64) * 374761393 + j.astype(np.int64) * 668265263 + seed * 2654435761
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65535.0


def value_noise(u: Arr, v: Arr, seed: int) -> Arr:
    """Smooth 0..1 noise with unit feature size: bilinear between lattice hashes, smoothstep-eased."""
    i, j = np.floor(u), np.floor(v)
    fu, fv = u - i, v - j
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a, b = hash01(i, j, seed), hash01(i + 1, j, seed)
    c, d = hash01(i, j + 1, seed), hash01(i + 1, j + 1, seed)
    return (a + (b - a) * fu) * (1 - fv) + (c + (d - c) * fu) * fv


def fbm(u: Arr, v: Arr, seed: int, octaves: int = 3) -> Arr:
    """Fractal noise (octaves at doubling frequency, halving weight), 0..1."""
    total, norm = np.zeros_like(u), 0.0
    for o in range(octaves):
        total += value_noise(u * 2**o, v * 2**o, seed + o) * 0.5**o
        norm += 0.5**o
    return total / norm


def _grooves(x: Arr, period: float, width: float) -> Arr:
    """True within `width` metres of a multiple of `period` (panel gaps, tile grout, seams)."""
    f = np.mod(x, period)
    return (f < width) | (f > period - width)


def _tint(c: Arr, f: Arr) -> Arr:
    return c[None, :] * f[:, None]


def planks(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Floorboards `scale` wide along v, 1.2 m long with staggered joints, grain and seams."""
    plank = np.floor(u / m.scale)
    vv = v + hash01(plank, plank, seed) * 1.2
    joint = np.floor(vv / 1.2)
    f = 0.75 + 0.4 * hash01(plank, joint, seed + 1) + 0.12 * (value_noise(u / 0.03, vv / 0.6, seed + 2) - 0.5)
    f = np.where(_grooves(u, m.scale, 0.004) | _grooves(vv, 1.2, 0.004), 0.45, f)
    return _tint(c, f)


def tiles(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The tiles pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    f = (
        0.92
        + 0.12 * hash01(np.floor(u / m.scale), np.floor(v / m.scale), seed)
        + 0.04 * value_noise(u / 0.05, v / 0.05, seed)
    )
    out = _tint(c, f)
    out[_grooves(u, m.scale, 0.005) | _grooves(v, m.scale, 0.005)] = c * 0.7  # grout
    return out


def wall(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Painted plaster with blotchy low-frequency variation and a white skirting board."""
    out = _tint(c, 0.9 + 0.12 * fbm(u / 0.8, v / 0.8, seed) + 0.03 * value_noise(u / 0.02, v / 0.02, seed + 7))
    out[v < 0.09] = (0.9, 0.9, 0.88)
    out[np.abs(v - 0.09) < 0.006] *= 0.6
    return out


def paint(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The paint pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    return _tint(c, 0.93 + 0.07 * fbm(u / 0.8, v / 0.8, seed))


def flat(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The flat pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    return _tint(c, 0.97 + 0.03 * value_noise(u / 0.05, v / 0.05, seed))


def wood(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Grain running along the face's longer side."""
    along, across = (u, v) if eu >= ev else (v, u)
    return _tint(c, 0.85 + 0.2 * value_noise(along / 0.4, across / 0.012, seed))


def carpet(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The carpet pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    return _tint(c, 0.82 + 0.12 * fbm(u / 0.5, v / 0.5, seed) + 0.12 * value_noise(u / 0.008, v / 0.008, seed + 3))


def fabric(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The fabric pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    weave = 0.04 * np.sin(u * 2 * np.pi / 0.01) * np.sin(v * 2 * np.pi / 0.01)
    return _tint(c, 0.85 + 0.15 * fbm(u / 0.25, v / 0.25, seed) + weave)


def doors(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Cupboard doors about `scale` wide with gaps and a handle beside each gap."""
    w = eu / max(1, round(eu / m.scale))
    out = wood(c, m, u, v, eu, ev, seed) if c.mean() < 0.7 else paint(c, m, u, v, eu, ev, seed)
    gap = _grooves(u, w, 0.006) | (np.abs(v - ev + 0.02) < 0.006) | (v < 0.06)
    handle = _grooves(u, 2 * w, 0.05) & ~_grooves(u, 2 * w, 0.03) & (np.abs(v - min(ev - 0.15, 1.0)) < 0.06)
    out[gap] *= 0.35
    out[handle] = (0.75, 0.75, 0.78)
    return out


def drawers(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The drawers pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    h = ev / max(1, round(ev / m.scale))
    out = wood(c, m, u, v, eu, ev, seed)
    out[_grooves(v, h, 0.006)] *= 0.35
    out[(np.abs(u - eu / 2) < 0.08) & (np.abs(np.mod(v, h) - 0.7 * h) < 0.012)] = (0.75, 0.75, 0.78)
    return out


def books(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Shelves every `scale` metres holding books of random colour, width and height."""
    shelf = np.floor(v / m.scale)
    book = np.floor((u + hash01(shelf, shelf, seed) * 0.1) / 0.045)
    hb = hash01(book, shelf, seed + 1)
    out = _BOOK_COLOURS[(hb * len(_BOOK_COLOURS)).astype(int) % len(_BOOK_COLOURS)] * (0.7 + 0.3 * hb[:, None])
    out[_grooves(u + hash01(shelf, shelf, seed) * 0.1, 0.045, 0.002)] *= 0.5
    empty = np.mod(v, m.scale) > m.scale * (0.6 + 0.3 * hash01(book, shelf, seed + 2))
    out[empty | (hash01(book, shelf, seed + 3) < 0.08)] = c * 0.25  # gaps show the dark back panel
    board = (np.mod(v, m.scale) < 0.025) | (u < 0.025) | (u > eu - 0.025) | (v > ev - 0.03)
    out[board] = c
    return out


def window(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """Bright sky-ish glass, lighter at the top, in a white frame with mullions every `scale`."""
    out = _tint(c, 0.8 + 0.2 * v / ev + 0.05 * value_noise(u / 0.3, v / 0.3, seed))
    bar = (u < 0.05) | (u > eu - 0.05) | (v < 0.05) | (v > ev - 0.05) | _grooves(u, m.scale, 0.02)
    out[bar] = (0.92, 0.92, 0.9)
    return out


def door(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The door pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    out = wood(c, m, u, v, eu, ev, seed) if c.mean() < 0.7 else paint(c, m, u, v, eu, ev, seed)
    frame = (u < 0.05) | (u > eu - 0.05) | (v > ev - 0.05)
    panel_edge = (np.abs(u - 0.15) < 0.008) | (np.abs(u - eu + 0.15) < 0.008)
    panel_edge &= (v > 0.2) & (v < ev - 0.2)
    out[frame] *= 0.8
    out[panel_edge] *= 0.6
    out[(np.abs(u - eu + 0.1) < 0.03) & (np.abs(v - 1.0) < 0.015)] = (0.8, 0.8, 0.8)  # handle
    return out


def picture(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The picture pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    n = np.stack([fbm(u / m.scale, v / m.scale, seed + 10 * k) for k in range(3)], axis=1)
    out = np.clip(c[None, :] * (0.4 + 1.2 * n), 0, 1)
    out[(u < 0.03) | (u > eu - 0.03) | (v < 0.03) | (v > ev - 0.03)] = (0.12, 0.1, 0.08)
    return out


def rug(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The rug pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    out = carpet(c, m, u, v, eu, ev, seed)
    out[(np.floor(u / m.scale) + np.floor(v / m.scale)) % 2 == 0] *= 0.8
    border = (u < 0.1) | (u > eu - 0.1) | (v < 0.1) | (v > ev - 0.1)
    out[border] = c[::-1] * 0.8
    return out


def screen(c: Arr, m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int) -> Arr:
    """The screen pattern: albedo (N, 3) from base colour `c` at surface coordinates (u, v); see `albedo`."""
    return _tint(c, 1.0 + 2.0 * np.clip(u / max(eu, 1e-3) - v / max(ev, 1e-3), 0, 1))  # a faint reflection


Pattern = Callable[[Arr, Material, Arr, Arr, float, float, int], Arr]
_SURFACE_PATTERNS = (planks, tiles, wall, paint, flat, wood, carpet, fabric)
_OBJECT_PATTERNS = (doors, drawers, books, window, door, picture, rug, screen)
PATTERNS: dict[str, Pattern] = {f.__name__: f for f in _SURFACE_PATTERNS + _OBJECT_PATTERNS}
# Front-only patterns: on a box's other faces (sides, top) they fall back to plain wood/paint.
FRONT_ONLY = {"doors", "drawers", "books", "screen"}


def albedo(m: Material, u: Arr, v: Arr, eu: float, ev: float, seed: int, front: bool = True) -> Arr:
    """Albedo (n, 3) float32 of material `m` at surface coordinates (u, v) (n,) metres."""
    name = m.pattern
    if name in FRONT_ONLY and not front:
        name = "flat" if name == "screen" else "wood"
    c = np.asarray(m.colour, dtype=np.float32)
    return np.clip(PATTERNS[name](c, m, u, v, eu, ev, seed), 0, 1).astype(np.float32)
