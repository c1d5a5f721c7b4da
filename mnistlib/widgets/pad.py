"""The drawing pad: a canvas you draw a digit on, and the model's answer beside it.

Three small widgets, each usable alone:

* :class:`DrawingCanvas` — the canvas (ipycanvas). It turns pen events (mouse down / move / up /
  out, touch) into :class:`~mnistlib.strokes.Strokes`, paints them, and calls a ``predict``
  function on the drawing's pixels: a few times a second while you draw, always when the pen lifts.
  It knows nothing of models or checkpoints.
* :class:`PredictionView` — the answer: the digit (or "not sure"), ten probability bars, and the
  28×28 image the model was given.
:class:`DigitPad` puts them together for a model: ``DigitPad(checkpoint)``. Lesson 08 adds labelled
collection on top (:class:`mnistlib.handwriting.collect.CollectingPad`).
"""

from __future__ import annotations

import html
import io
import math
import numbers
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, hold_canvas
from PIL import Image

from mnistlib._support.images import MAX_SIDE
from mnistlib.drawing import NOT_SURE_BELOW, DrawingError, Prediction, classify, model_and_normalisation, prepare_digit
from mnistlib.strokes import StrokeList, Strokes, rasterize

__all__ = [
    "DigitPad",
    "DrawingCanvas",
    "PredictionView",
    "ProbabilityBars",
    "SeenImage",
    "enable_colab_widgets",
]

EMPTY_MESSAGE = "Draw a digit in the white square (mouse or finger)."
#: What a front end that cannot show widgets prints instead of the pad (ipywidgets cuts it at 110).
NO_WIDGETS = "Drawing pad (if you read this, no widgets here: see 'No canvas?' in lesson 05)"

Listener = Callable[[Prediction | None, str], None]
MIN_SIZE = 28  #: the smallest canvas: MNIST's own 28×28


def _number(value: Any, name: str, what: str, accepted: str, low: float, high: float, whole: bool = False) -> Any:
    """``value`` when it is a number (a whole one if ``whole``) from ``low`` to ``high``; else a one-line
    ValueError naming the argument, what it means and what it accepts."""
    kind = numbers.Integral if whole else numbers.Real
    if not isinstance(value, kind) or isinstance(value, bool) or not low <= value <= high:  # NaN fails too
        raise ValueError(f"{name} ({what}) must be {accepted}, got {value!r}")
    return value


def check_canvas_options(size: Any, brush: Any, throttle: Any) -> tuple[int, float, float]:
    """The canvas's ``size``, ``brush`` and ``throttle`` checked (a one-line ValueError for each that is out
    of range), as int, float, float."""
    size = int(_number(size, "size", "the canvas side in pixels", f"a whole number from {MIN_SIZE} to {MAX_SIDE}",
                       MIN_SIZE, MAX_SIDE, whole=True))
    brush = float(_number(brush, "brush", "the pen's width in canvas pixels",
                          f"a number from 1 to half the canvas side ({size / 2:g})", 1, size / 2))
    throttle = float(_number(throttle, "throttle", "seconds between live predictions while drawing",
                             "a number of seconds, at least 0 (inf: only when the pen lifts)", 0, math.inf))
    return size, brush, throttle


def enable_colab_widgets() -> bool:
    """In Google Colab, turn on its custom widget manager (ipycanvas needs it); elsewhere do nothing.

    Returns True when Colab was found and the manager enabled. Never fails outside Colab.
    """
    if "google.colab" not in sys.modules:
        return False
    try:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
    except Exception:  # an old or unusual Colab: the pad shows NO_WIDGETS text instead
        return False
    return True


# --------------------------------------------------------------------------------------------
# The canvas
# --------------------------------------------------------------------------------------------


class DrawingCanvas(widgets.VBox):
    """A square canvas drawn on with the mouse or a finger, predicting as you draw.

    ``predict(pixels)`` gets the drawing as uint8 [size, size] (ink = 255 on 0) and returns a
    :class:`~mnistlib.drawing.Prediction`; a :class:`DrawingError` becomes a message. Listeners
    added with :meth:`on_update` hear every new ``(prediction, message)``.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], Prediction],
        *,
        size: int = 280,
        brush: float = 20.0,
        throttle: float = 0.15,
    ) -> None:
        self.predict = predict
        self.size, self.brush, self.throttle = check_canvas_options(size, brush, throttle)
        self.strokes = Strokes()
        self.prediction: Prediction | None = None
        self.message = EMPTY_MESSAGE
        self._listeners: list[Listener] = []
        self._last_update = 0.0
        self.canvas = Canvas(width=self.size, height=self.size)
        self.canvas.layout.width = self.canvas.layout.height = f"{self.size}px"
        self.canvas.add_class("mnist-pad-canvas")
        self.errors = widgets.Output()  # tracebacks of unexpected callback errors land here
        # The border goes on a box around the canvas, never on the canvas (it would shift the mouse).
        paper = widgets.Box([self.canvas], layout=widgets.Layout(border="2px solid #888", width="fit-content"))
        super().__init__([paper, self.errors])
        self._wire()
        self._paint_background()

    def on_update(self, listener: Listener) -> None:
        """Call ``listener(prediction, message)`` after every prediction (and clear)."""
        self._listeners.append(listener)

    # ---- wiring: pen events only -----------------------------------------------------------
    def _safe(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a callback: an error becomes a one-line message (traceback in ``errors``)."""

        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self.strokes.end()
                self._tell(None, f"Something went wrong: {type(exc).__name__}: {exc}")
                with self.errors:
                    traceback.print_exc()

        return wrapped

    def _wire(self) -> None:
        c = self.canvas
        c.on_mouse_down(self._safe(self._down))
        c.on_mouse_move(self._safe(self._move))
        c.on_mouse_up(self._safe(self._up))
        c.on_mouse_out(self._safe(self._up))  # a release outside the canvas must lift the pen too
        c.on_touch_start(self._safe(lambda t: t and self._down(*t[0])))
        c.on_touch_move(self._safe(lambda t: t and self._move(*t[0])))
        c.on_touch_end(self._safe(lambda t: self._up(*t[0]) if t else self._up()))  # may carry no points
        c.on_touch_cancel(self._safe(lambda t: self._up()))
        c.on_client_ready(self._safe(self._repaint))

    def _down(self, x: float, y: float) -> None:
        self.strokes.end()
        if self.strokes.add(x, y) is None and self.strokes.pen_down:
            # The throttle clock starts at pen-down: a live update comes `throttle` seconds into a
            # stroke at the earliest (comparing with a zero start breaks on machines up for long).
            self._last_update = time.perf_counter()
            with hold_canvas():
                self.canvas.fill_circle(x, y, self.brush / 2)

    def _extend(self, x: float, y: float) -> None:
        """Add a point to the open stroke and paint the new segment."""
        previous = self.strokes.add(x, y)
        if previous is not None:
            with hold_canvas():
                self.canvas.stroke_line(previous[0], previous[1], x, y)

    def _move(self, x: float, y: float) -> None:
        if not self.strokes.pen_down:
            return  # hovering draws nothing
        self._extend(x, y)
        if time.perf_counter() - self._last_update >= self.throttle:
            self.update()  # live, but at most every `throttle` seconds while drawing

    def _up(self, x: float | None = None, y: float | None = None) -> None:
        if not self.strokes.pen_down:
            return
        if x is not None and y is not None:
            self._extend(x, y)
        self.strokes.end()
        self.update()  # always on pen-up

    # ---- painting ---------------------------------------------------------------------------
    def _paint_background(self) -> None:
        c = self.canvas
        with hold_canvas():
            c.clear()
            c.fill_style = "white"
            c.fill_rect(0, 0, self.size, self.size)
            c.fill_style = c.stroke_style = "black"
            c.line_width = self.brush
            c.line_cap = c.line_join = "round"

    def _paint(self, strokes: StrokeList) -> None:
        with hold_canvas():
            for stroke in strokes:
                pts = [(float(x), float(y)) for x, y in stroke]
                pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
                if pts:
                    self.canvas.fill_circle(pts[0][0], pts[0][1], self.brush / 2)
                if len(pts) > 1:
                    self.canvas.stroke_lines(pts)

    def _repaint(self) -> None:
        self._paint_background()
        self._paint(self.strokes.as_list())

    # ---- what the pad does ------------------------------------------------------------------
    def _tell(self, prediction: Prediction | None, message: str) -> None:
        self.prediction, self.message = prediction, message
        for listener in self._listeners:
            listener(prediction, message)

    def raster(self) -> np.ndarray:
        """The drawing as pixels: uint8 [size, size], ink = 255 on 0."""
        return rasterize(self.strokes, self.size, self.brush)

    def update(self) -> Prediction | None:
        """Predict from the current strokes and tell the listeners."""
        self._last_update = time.perf_counter()
        if not len(self.strokes):
            self._tell(None, EMPTY_MESSAGE)
            return None
        try:
            self._tell(self.predict(self.raster()), "")
        except DrawingError as exc:
            self._tell(None, str(exc))
        return self.prediction

    def draw_strokes(self, strokes: StrokeList) -> Prediction | None:
        """Add strokes (lists of (x, y) canvas points) as if drawn, then predict."""
        new = Strokes(strokes).as_list()
        self._paint(new)
        self.strokes.extend(new)
        return self.update()

    def undo(self) -> Prediction | None:
        """Remove the last stroke, repaint and predict again."""
        self.strokes.undo()
        self._repaint()
        return self.update()

    def clear(self) -> None:
        """Wipe the canvas and forget the prediction."""
        self.strokes.clear()
        self._paint_background()
        self.update()


# --------------------------------------------------------------------------------------------
# The answer
# --------------------------------------------------------------------------------------------


class ProbabilityBars(widgets.HTML):
    """Ten horizontal bars, one per digit (plain HTML: cheap to redraw on every stroke)."""

    def __init__(self, width: int = 140) -> None:
        super().__init__()
        self.width = width
        self.show(None)

    def show(self, probabilities: np.ndarray | None) -> None:
        best = int(np.argmax(probabilities)) if probabilities is not None else -1
        rows = []
        for d in range(10):
            p = float(probabilities[d]) if probabilities is not None else 0.0
            colour = "#d62728" if d == best else "#1f77b4"
            rows.append(
                f'<div class="mnist-pad-bar" data-digit="{d}" style="display:flex;'
                f'align-items:center;height:17px;font-family:monospace">'
                f'<span style="width:1.3em">{d}</span>'
                f'<span style="display:inline-block;height:12px;width:{p * self.width:.1f}px;'
                f'background:{colour}"></span>'
                f'<span style="margin-left:4px;font-size:11px">{p:.0%}</span></div>'
            )
        self.value = '<div class="mnist-pad-bars">' + "".join(rows) + "</div>"


class SeenImage(widgets.Image):
    """The 28×28 image the model was given, enlarged with crisp pixels (ink white on black)."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__(format="png", width=28 * scale, height=28 * scale)
        self.scale = scale
        self.add_class("mnist-pad-seen")
        self.show(None)

    def show(self, image28: np.ndarray | None) -> None:
        a = np.zeros((28, 28), np.float32) if image28 is None else np.clip(image28, 0, 1)
        img = Image.fromarray(np.uint8(a * 255), mode="L")
        img = img.resize((28 * self.scale, 28 * self.scale), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        self.value = buf.getvalue()


def _headline(prediction: Prediction | None, message: str) -> str:
    """The answer line: "I read: 7 (93% sure)", "Not sure. Maybe: 7 (41%)", or a message."""
    if prediction is None:
        return ('<div style="min-height:50px;display:flex;align-items:center;max-width:320px">'
                f'<span class="mnist-pad-message">{html.escape(message)}</span></div>')
    p = prediction
    sure = p.sure
    lead = "I read: " if sure else "Not sure. Maybe: "
    colour = "inherit" if sure else "#888"
    extra = f"{p.confidence:.0%} sure" if sure else f"{p.confidence:.0%}; below {p.threshold:.0%}"
    return (f'<div class="{"mnist-pad-sure" if sure else "mnist-pad-not-sure"}" '
            'style="line-height:50px;white-space:nowrap">'
            f'<span style="font-size:15px">{lead}</span>'
            f'<span class="mnist-pad-digit" style="font-size:40px;font-weight:bold;color:{colour}">'
            f"{p.digit}</span> "
            f'<span class="mnist-pad-confidence">({extra})</span></div>')


class PredictionView(widgets.VBox):
    """The model's answer: the digit or "not sure", the ten bars, and the 28×28 it saw."""

    def __init__(self) -> None:
        self.headline = widgets.HTML()
        self.headline.add_class("mnist-pad-prediction")
        self.bars = ProbabilityBars()
        self.seen = SeenImage()
        super().__init__(
            [self.headline, self.bars, widgets.HTML("<small>what the model sees (28×28):</small>"), self.seen],
            layout=widgets.Layout(margin="0 0 0 16px"),
        )
        self.show(None, EMPTY_MESSAGE)

    def show(self, prediction: Prediction | None, message: str = "") -> None:
        self.headline.value = _headline(prediction, message)
        self.bars.show(None if prediction is None else prediction.probabilities)
        self.seen.show(None if prediction is None else prediction.image28)


# --------------------------------------------------------------------------------------------
# The pad
# --------------------------------------------------------------------------------------------


def _describe(source: Any) -> str:
    """"model 'batchnorm' from best_model_….pth (validation accuracy 97.5%)" for a Checkpoint."""
    name = getattr(source, "name", None) or type(getattr(source, "model", source)).__name__
    text = f"model {name!r}"
    path = getattr(source, "path", None)
    if path:
        text += f" from {Path(path).name}"
    acc = getattr(source, "best_val_acc", None)
    if isinstance(acc, float) and math.isfinite(acc):
        text += f" (validation accuracy {acc:.1%})"
    return text


class DigitPad(widgets.VBox):
    """A drawing pad showing a live prediction: ``DigitPad(checkpoint)``.

    ``model`` is a Checkpoint (``load_or_train()``, ``load_checkpoint(path)``) or an ``nn.Module``
    with ``mean``/``std``. Below ``threshold`` the pad says it is not sure. Draw with the mouse or a
    finger, or from code with :meth:`draw_strokes`; the last answer is in ``pad.prediction``.
    ``size`` is 28–2048 pixels, ``brush`` 1 to half of it, ``throttle`` at least 0 seconds and
    ``threshold`` 0–1: anything else is a one-line ``ValueError`` naming the argument.
    """

    def __init__(self, model: Any, *, mean: float | None = None, std: float | None = None,
                 size: int = 280, brush: float = 20.0, throttle: float = 0.15,
                 threshold: float = NOT_SURE_BELOW) -> None:
        check_canvas_options(size, brush, throttle)  # before the model is even looked at
        threshold = float(_number(threshold, "threshold", "below it the pad says it is not sure",
                                  "a probability from 0 to 1", 0, 1))
        net, mean, std = model_and_normalisation(model, mean, std)
        self.model, self.mean, self.std, self.threshold = net, mean, std, threshold
        self.drawing = DrawingCanvas(self._predict, size=size, brush=brush, throttle=throttle)
        self.view = PredictionView()
        self.drawing.on_update(self.view.show)
        self.clear_button = widgets.Button(description="Clear", icon="eraser")
        self.clear_button.add_class("mnist-pad-clear")
        self.clear_button.on_click(self.drawing._safe(lambda _b: self.clear()))
        self.undo_button = widgets.Button(description="Undo stroke", icon="undo")
        self.undo_button.add_class("mnist-pad-undo")
        self.undo_button.on_click(self.drawing._safe(lambda _b: self.drawing.undo()))
        self.status = widgets.HTML(f"<small>Using {html.escape(_describe(model))}.</small>")
        self.status.add_class("mnist-pad-status")
        left = widgets.VBox([self.drawing, widgets.HBox([self.clear_button, self.undo_button])])
        super().__init__([widgets.HBox([left, self.view]), self.status], layout=widgets.Layout(width="fit-content"))
        self.add_class("mnist-pad")

    def _predict(self, pixels: np.ndarray) -> Prediction:
        return classify(prepare_digit(pixels), self.model, self.mean, self.std, self.threshold)

    def __repr__(self) -> str:
        return NO_WIDGETS

    # ---- the drawing's state, for code and tests ------------------------------------------
    @property
    def canvas(self) -> Canvas:
        """The ipycanvas ``Canvas`` that receives the pen events."""
        return self.drawing.canvas

    @property
    def size(self) -> int:
        """Side of the canvas in pixels."""
        return self.drawing.size

    @property
    def brush(self) -> float:
        """Brush width in canvas pixels."""
        return self.drawing.brush

    @property
    def strokes(self) -> list[list[tuple[float, float]]]:
        """The strokes drawn so far, as lists of (x, y) canvas points."""
        return self.drawing.strokes.as_list()

    @property
    def prediction(self) -> Prediction | None:
        return self.drawing.prediction

    @property
    def message(self) -> str:
        return self.drawing.message

    @property
    def probabilities(self) -> np.ndarray | None:
        """The ten probabilities of the last prediction (None before any drawing)."""
        return None if self.prediction is None else self.prediction.probabilities

    @property
    def image28(self) -> np.ndarray | None:
        """The 28×28 image the model saw last (ink = 1)."""
        return None if self.prediction is None else self.prediction.image28

    def draw_strokes(self, strokes: StrokeList) -> Prediction | None:
        """Add strokes (lists of (x, y) canvas points) as if drawn, then predict."""
        return self.drawing.draw_strokes(strokes)

    def raster(self) -> np.ndarray:
        """The drawing as pixels: uint8 [size, size], ink = 255 on 0."""
        return self.drawing.raster()

    def update(self) -> Prediction | None:
        """Predict from the current strokes and refresh the display."""
        return self.drawing.update()

    def clear(self) -> None:
        """Wipe the pad and forget the prediction."""
        self.drawing.clear()
