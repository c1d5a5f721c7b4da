"""A made-up person's handwriting, for when no human is there to draw (tests, quick runs).

Each digit 0–9 has a stroke template in one consistent personal style — a 1 with a flag and a
base, a crossed 7, an open 4, a 9 with a straight stem — and every sample jitters it the way a hand
does: stroke width, slant, scale, aspect, rotation, position and a slow wobble along the strokes.
The samples are written through a :class:`~mnistlib.handwriting.HandwritingStore`, exactly as
pad drawings are, so everything downstream treats them like a learner's own — in one drawing
session or several: as a person's writing does from one day to the next, each session after the
first drifts a little from the usual style (a pen thicker or thinner, more or less lean, larger or
smaller digits). Made by code from a seed; nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .store import HandwritingStore, Sample

__all__ = ["TEMPLATES", "SessionStyle", "make_synthetic_digits", "session_style", "synthetic_strokes"]

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 18) -> Stroke:
    """Points on an ellipse from angle ``start`` to ``end`` in degrees (0 = right, 90 = down)."""
    t = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


#: Strokes per digit in a unit square (x right, y down): one writer's consistent, un-American style.
TEMPLATES: dict[int, list[Stroke]] = {
    0: [_arc(0.5, 0.5, 0.22, 0.38, -100, 268, 28), [(0.66, 0.2), (0.34, 0.8)]],  # slashed
    1: [[(0.16, 0.5), (0.58, 0.08), (0.56, 0.9)], [(0.34, 0.9), (0.78, 0.9)]],  # long flag and a base
    2: [_arc(0.5, 0.3, 0.21, 0.2, 190, 375) + [(0.3, 0.8)] + _arc(0.36, 0.8, 0.08, 0.08, 180, 450)
        + [(0.78, 0.86)]],  # a loop at the bottom
    3: [[(0.27, 0.12), (0.72, 0.12), (0.45, 0.45)] + _arc(0.48, 0.68, 0.24, 0.22, -80, 150)],  # flat top
    4: [[(0.62, 0.1), (0.22, 0.62), (0.84, 0.62)], [(0.62, 0.1), (0.62, 0.92)]],  # closed
    5: [[(0.72, 0.1), (0.36, 0.12), (0.31, 0.47)] + _arc(0.48, 0.68, 0.23, 0.22, -120, 170)],  # one stroke
    6: [[(0.7, 0.08), (0.48, 0.22), (0.34, 0.48)] + _arc(0.52, 0.7, 0.18, 0.19, 200, 560)],
    7: [[(0.2, 0.24), (0.24, 0.12), (0.78, 0.12), (0.42, 0.9)], [(0.32, 0.5), (0.72, 0.5)]],  # serif, crossed
    8: [_arc(0.5, 0.27, 0.16, 0.17, 90, 450), _arc(0.5, 0.68, 0.22, 0.22, -90, 270)],  # two rings
    9: [_arc(0.5, 0.28, 0.2, 0.19, 0, 360), [(0.7, 0.28), (0.68, 0.78)] + _arc(0.48, 0.78, 0.2, 0.14, 0, 170)],
}


def _densify(stroke: Stroke, step: float = 0.02) -> np.ndarray:
    """The stroke with points every ``step`` or so, so the wobble bends lines too."""
    pts = np.asarray(stroke, dtype=np.float64)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, math.ceil(float(np.hypot(*(b - a))) / step))
        out.extend(a + (b - a) * (i / n) for i in range(1, n + 1))
    return np.asarray(out)


def _wobble(pts: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Bend a stroke slowly: two random sine waves along its length, in x and y."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    out = pts.copy()
    for axis in (0, 1):
        freq, phase = rng.uniform(2, 6), rng.uniform(0, 2 * math.pi)
        out[:, axis] += amount * np.sin(freq * s + phase) + rng.normal(0, amount / 4)
    return out


@dataclass(frozen=True)
class SessionStyle:
    """How one drawing session differs from the writer's usual hand (the defaults: not at all)."""

    slant: float = 0.0  #: added to every sample's slant (positive: leans further right)
    brush: float = 1.0  #: the pen's width, as a factor
    scale: float = 1.0  #: the digits' size, as a factor


def session_style(rng: np.random.Generator) -> SessionStyle:
    """A small random drift of the usual style, as between two sittings."""
    return SessionStyle(slant=rng.uniform(-0.12, 0.12), brush=rng.uniform(0.75, 1.3), scale=rng.uniform(0.9, 1.1))


def synthetic_strokes(digit: int, rng: np.random.Generator, size: int = 280,
                      style: SessionStyle = SessionStyle()) -> tuple[list[Stroke], float]:
    """One jittered drawing of ``digit`` on a ``size`` canvas in a session's ``style``:
    (strokes in canvas pixels, brush width)."""
    slant, angle = rng.uniform(-0.1, 0.5) + style.slant, math.radians(rng.uniform(-12, 12))
    scale, aspect = rng.uniform(0.45, 0.85) * style.scale, rng.uniform(0.75, 1.25)
    wobble, brush = rng.uniform(0.005, 0.03), rng.uniform(0.06, 0.22) * scale * size * style.brush
    strokes = [_wobble(_densify(s), rng, wobble) - 0.5 for s in TEMPLATES[int(digit)]]
    cos, sin = math.cos(angle), math.sin(angle)
    placed = []
    for p in strokes:
        x, y = p[:, 0] * aspect - slant * p[:, 1], p[:, 1]  # slant: the top leans right
        placed.append(np.stack([x * cos - y * sin, x * sin + y * cos], axis=1) * scale)
    reach = max(float(np.abs(np.concatenate(placed)).max()), 1e-6)
    room = max(0.0, 0.5 - reach - brush / size / 2)  # move it about, but keep the ink on the canvas
    centre = 0.5 + rng.uniform(-room, room, size=2)
    return [[(float(x), float(y)) for x, y in (p + centre) * size] for p in placed], float(brush)


def make_synthetic_digits(store: HandwritingStore, per_digit: int = 10, seed: int = 0,
                          size: int = 280, sessions: int = 1) -> list[Sample]:
    """Write ``per_digit`` jittered drawings of each digit into ``store``'s folder (0, 1, …, 9, 0, 1, …, as
    a learner following the pad's suggestions would), spread as evenly as possible over ``sessions``
    drawing sessions named ``made-up-1``, ``made-up-2``…; every session after the first has its own
    :func:`session_style`. The same ``seed`` gives the same drawings; one session gives the drawings
    this function always gave."""
    if per_digit < 1:
        raise ValueError(f"per_digit must be ≥ 1, got {per_digit}")
    if not 1 <= sessions <= per_digit:
        raise ValueError(f"sessions must be between 1 and per_digit ({per_digit}), got {sessions}")
    rng = np.random.default_rng(seed)
    styles = np.random.default_rng([seed, 1])  # apart from rng, so one session draws what it always drew
    samples = []
    for number, rounds in enumerate(np.array_split(np.arange(per_digit), sessions), start=1):
        style = SessionStyle() if number == 1 else session_style(styles)
        session = store if sessions == 1 else HandwritingStore(store.folder, session=f"made-up-{number}")
        for _ in rounds:
            for digit in range(10):
                strokes, brush = synthetic_strokes(digit, rng, size, style)
                samples.append(session.add_drawing(strokes, digit, size=size, brush=brush))
    return samples
