"""A drawing as data: strokes of canvas points, and how they become pixels.

The drawing pad records what the pen does as a list of strokes, each a list of (x, y) canvas
points. Keeping that in Python (rather than reading the browser's pixels back) means a drawing can
be made from code, saved, replayed and tested without a browser: :class:`Strokes` holds it,
:func:`rasterize` paints it with a round brush.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Point", "Strokes", "StrokeList", "example_strokes", "rasterize"]

Point = tuple[float, float]
#: Anything shaped like a drawing: a sequence of strokes, each a sequence of (x, y) points.
StrokeList = Sequence[Sequence[tuple[float, float]]]


def _point(x: float, y: float) -> Point | None:
    """(x, y) as floats, or None when either is not a finite number (a glitchy event)."""
    try:
        p = (float(x), float(y))
    except (TypeError, ValueError):
        return None
    return p if math.isfinite(p[0]) and math.isfinite(p[1]) else None


class Strokes:
    """The strokes of one drawing. ``add`` a point (it opens a stroke when none is open), ``end``
    the stroke when the pen lifts; ``undo`` drops the last stroke, ``clear`` all of them."""

    def __init__(self, strokes: Iterable[Iterable[tuple[float, float]]] = ()) -> None:
        self._strokes: list[list[Point]] = []
        self._open = False
        self.extend(strokes)

    @property
    def pen_down(self) -> bool:
        """True while a stroke is open (between the first point and ``end``)."""
        return self._open

    @property
    def last_point(self) -> Point | None:
        """The most recent point, or None for an empty drawing."""
        return self._strokes[-1][-1] if self._strokes else None

    def add(self, x: float, y: float) -> Point | None:
        """Add a point to the open stroke (or start one); returns the point before it in the stroke.

        A point with a NaN or infinite coordinate is ignored; so is a repeat of the last point.
        """
        p = _point(x, y)
        if p is None:
            return None
        if not self._open:
            self._strokes.append([p])
            self._open = True
            return None
        previous = self._strokes[-1][-1]
        if p != previous:
            self._strokes[-1].append(p)
        return previous

    def end(self) -> None:
        """Close the open stroke (pen up); the next point starts a new one."""
        self._open = False

    def extend(self, strokes: Iterable[Iterable[tuple[float, float]]]) -> None:
        """Add whole strokes, each closed (as if drawn and lifted)."""
        for stroke in strokes:
            self.end()
            for x, y in stroke:
                self.add(x, y)
        self.end()

    def undo(self) -> list[Point] | None:
        """Remove and return the last stroke (None when there is none)."""
        self._open = False
        return self._strokes.pop() if self._strokes else None

    def clear(self) -> None:
        """Forget every stroke."""
        self._strokes, self._open = [], False

    def as_list(self) -> list[list[Point]]:
        """A copy of the strokes as plain lists of (x, y) tuples (JSON-friendly)."""
        return [list(s) for s in self._strokes]

    def __len__(self) -> int:
        return len(self._strokes)

    def __iter__(self) -> Iterator[list[Point]]:
        return iter(self.as_list())

    def __repr__(self) -> str:
        points = sum(len(s) for s in self._strokes)
        return f"Strokes({len(self)} stroke(s), {points} point(s){', pen down' if self._open else ''})"


def rasterize(strokes: StrokeList | Strokes, size: int = 280, brush: float = 20.0) -> np.ndarray:
    """Draw strokes (lists of canvas points) with a round brush: uint8 [size, size], ink = 255."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    r = brush / 2
    for stroke in strokes:
        pts = [p for p in (_point(x, y) for x, y in stroke) if p is not None]
        if not pts:
            continue
        if len(pts) > 1:
            draw.line(pts, fill=255, width=max(1, round(brush)), joint="curve")
        for x, y in pts:  # round caps and joints
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img)


_EXAMPLES: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(150, 45), (146, 100), (142, 160), (140, 235)]],
    "7": [[(85, 60), (150, 58), (205, 60), (175, 120), (145, 180), (125, 240)]],
    "7-bar": [
        [(85, 60), (150, 58), (205, 60), (175, 120), (145, 180), (125, 240)],
        [(120, 150), (195, 150)],
    ],
    "small-1-corner": [[(230, 20), (228, 50), (226, 80)]],
    "small-7-corner": [[(20, 200), (50, 199), (70, 200), (58, 228), (48, 260)]],
    "dot": [[(140, 140)]],
}


def example_strokes(name: str, size: int = 280) -> list[list[tuple[float, float]]]:
    """Hand-made canvas strokes for demos and tests, scaled to a ``size``-pixel canvas.

    Names: "1", "7", "7-bar" (a 7 crossed on its stem), "small-1-corner", "small-7-corner", "dot".
    """
    if name not in _EXAMPLES:
        raise KeyError(f"unknown example {name!r}; choose from {sorted(_EXAMPLES)}")
    s = size / 280
    return [[(x * s, y * s) for x, y in stroke] for stroke in _EXAMPLES[name]]
