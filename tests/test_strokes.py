"""Stroke data without a browser: what the pen did, and the pixels it makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnistlib.strokes import Strokes, example_strokes, rasterize


def test_points_open_a_stroke_and_end_closes_it() -> None:
    s = Strokes()
    assert s.add(10, 10) is None and s.pen_down  # the first point starts a stroke
    assert s.add(20, 15) == (10.0, 10.0)  # later ones return the point before
    s.end()
    assert not s.pen_down
    s.add(50, 50)  # after end: a new stroke
    assert s.as_list() == [[(10.0, 10.0), (20.0, 15.0)], [(50.0, 50.0)]] and len(s) == 2
    assert s.last_point == (50.0, 50.0)


def test_glitches_are_ignored() -> None:
    s = Strokes()
    s.add(1, 1)
    s.add(1, 1)  # a repeat adds nothing
    s.add(math.nan, 4)
    s.add(3, math.inf)
    assert s.as_list() == [[(1.0, 1.0)]]
    assert Strokes().add(math.nan, 0) is None and len(Strokes([[(math.nan, 1)]])) == 0


def test_undo_and_clear() -> None:
    s = Strokes(example_strokes("7-bar"))
    assert len(s) == 2 and not s.pen_down
    assert s.undo() == [(120.0, 150.0), (195.0, 150.0)]
    assert len(s) == 1
    s.clear()
    assert s.as_list() == [] and s.undo() is None and s.last_point is None


def test_as_list_is_a_copy() -> None:
    s = Strokes([[(0, 0), (5, 5)]])
    copy = s.as_list()
    copy[0].append((9, 9))
    assert len(s.as_list()[0]) == 2


def test_rasterize_paints_a_round_brush() -> None:
    img = rasterize([[(140, 140)]], size=280, brush=20)
    assert img.shape == (280, 280) and img.dtype == np.uint8
    ys, xs = np.nonzero(img)
    assert abs(xs.mean() - 140) < 1 and abs(ys.mean() - 140) < 1
    assert 18 <= xs.max() - xs.min() + 1 <= 22  # a dot as wide as the brush


def test_rasterize_accepts_strokes_and_lists_alike() -> None:
    strokes = example_strokes("7")
    np.testing.assert_array_equal(rasterize(Strokes(strokes)), rasterize(strokes))


def test_rasterize_skips_bad_points() -> None:
    img = rasterize([[(math.nan, 3), (10, 10), (20, 20)], [], [(math.inf, 1)]], size=40, brush=2)
    assert img[15, 15] == 255 and img.sum() > 0


def test_example_strokes_scale_with_the_canvas() -> None:
    small, big = example_strokes("1", 140), example_strokes("1", 280)
    assert small[0][0] == pytest.approx((big[0][0][0] / 2, big[0][0][1] / 2))
    with pytest.raises(KeyError, match="choose from"):
        example_strokes("nine")
