"""The drawing pad without a browser: pen events as ipycanvas delivers them, the answer, collection."""

from __future__ import annotations

import errno
import sys
import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from small_models import MEAN, STD, Fixed, tiny_model
from torch import nn

from mnistlib.drawing import Prediction, predict_image, prepare_digit
from mnistlib.handwriting.collect import CollectingPad
from mnistlib.handwriting.store import HandwritingStore
from mnistlib.strokes import example_strokes, rasterize
from mnistlib.widgets import pad as pad_module
from mnistlib.widgets.pad import DigitPad, DrawingCanvas, PredictionView, enable_colab_widgets


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


def send(target, event: str, x: float = 0, y: float = 0, touches=None) -> None:
    """Deliver a front-end event exactly as ipycanvas does when the browser sends it."""
    content = {"event": event, "x": x, "y": y}
    if touches is not None:
        content = {"event": event, "touches": [{"x": tx, "y": ty} for tx, ty in touches]}
    target.canvas._handle_frontend_event(None, content, [])


POINTS = st.tuples(st.floats(-50, 330), st.floats(-50, 330))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(POINTS, min_size=0, max_size=8), max_size=4))
def test_any_strokes_give_a_prediction_or_a_message(strokes) -> None:
    pad = DigitPad(tiny_model(), mean=MEAN, std=STD)
    result = pad.draw_strokes(strokes)
    assert (result is None) == (pad.prediction is None)
    if result is None:
        assert pad.message and "\n" not in pad.message
    else:
        assert pad.probabilities.shape == (10,)


# ------------------------------------------------------------------------ the canvas alone


def test_canvas_needs_only_a_predict_function() -> None:
    seen = []
    answer = Prediction(3, np.eye(10)[3], np.zeros((28, 28), np.float32))

    def predict(pixels: np.ndarray) -> Prediction:
        seen.append(pixels)
        return answer

    updates = []
    canvas = DrawingCanvas(predict, size=100, brush=8, throttle=3600)
    canvas.on_update(lambda p, message: updates.append((p, message)))
    send(canvas, "mouse_down", 10, 10)
    send(canvas, "mouse_move", 50, 60)
    assert seen == []  # throttled
    send(canvas, "mouse_up", 80, 90)
    assert len(seen) == 1 and seen[0].shape == (100, 100) and seen[0].dtype == np.uint8
    np.testing.assert_array_equal(seen[0], rasterize([[(10, 10), (50, 60), (80, 90)]], 100, 8))
    assert updates == [(answer, "")]
    canvas.undo()
    assert canvas.prediction is None and updates[-1] == (None, pad_module.EMPTY_MESSAGE)


# ------------------------------------------------------------------------ the pad


def test_pad_starts_empty_and_asks_for_a_drawing(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    assert pad.prediction is None and pad.probabilities is None
    assert "Draw a digit" in pad.view.headline.value
    assert "mnist-pad-prediction" in pad.view.headline._dom_classes
    pad.update()  # clicking around without drawing changes nothing
    assert pad.prediction is None


def test_pad_draw_strokes_matches_predict_image(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    p = pad.draw_strokes(example_strokes("7"))
    ref = predict_image(rasterize(example_strokes("7")), model, mean=MEAN, std=STD)
    assert p is pad.prediction and p.digit == ref.digit
    np.testing.assert_allclose(pad.probabilities, ref.probabilities, atol=1e-6)
    assert f">{p.digit}</span>" in pad.view.headline.value
    assert pad.view.seen.value[:4] == b"\x89PNG"
    assert f'data-digit="{p.digit}"' in pad.view.bars.value
    np.testing.assert_array_equal(pad.image28, prepare_digit(pad.raster()))
    pad.clear()
    assert pad.prediction is None and pad.strokes == []


def test_mouse_events_draw_and_predict_on_pen_up(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD, throttle=3600)
    send(pad, "mouse_move", 10, 10)  # hovering draws nothing
    assert pad.strokes == []
    send(pad, "mouse_down", 150, 45)
    for y in range(60, 240, 20):
        send(pad, "mouse_move", 146, y)
    assert pad.prediction is None  # throttled during the stroke (an hour here)…
    send(pad, "mouse_up", 140, 240)
    assert pad.prediction is not None  # …always on pen-up
    assert len(pad.strokes) == 1 and pad.strokes[0][-1] == (140.0, 240.0)
    send(pad, "mouse_move", 20, 20)  # pen is up again: ignored
    assert len(pad.strokes[0]) == 11


def test_live_update_during_a_stroke(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD, throttle=0)
    send(pad, "mouse_down", 150, 45)
    send(pad, "mouse_move", 146, 200)
    assert pad.prediction is not None


def test_leaving_the_canvas_lifts_the_pen(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    send(pad, "mouse_down", 100, 100)
    send(pad, "mouse_move", 200, 100)
    send(pad, "mouse_out", 290, 100)
    assert not pad.drawing.strokes.pen_down and pad.prediction is not None
    send(pad, "mouse_move", 100, 200)
    assert len(pad.strokes) == 1


def test_touch_draws_and_touch_end_without_points_uses_the_last_move(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD, throttle=3600)
    send(pad, "touch_start", touches=[(140, 40)])
    send(pad, "touch_move", touches=[(140, 240)])
    send(pad, "touch_end", touches=[])
    assert pad.strokes == [[(140.0, 40.0), (140.0, 240.0)]] and pad.prediction is not None
    send(pad, "touch_start", touches=[(40, 40)])
    send(pad, "touch_cancel", touches=[])
    assert len(pad.strokes) == 2 and not pad.drawing.strokes.pen_down


@pytest.mark.parametrize("name", ["dot", "small-1-corner", "1", "7-bar"])
def test_dots_corners_and_borders_get_an_answer(model, name: str) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    assert pad.draw_strokes(example_strokes(name)) is not None
    pad.clear()
    assert pad.draw_strokes([[(0, 0), (280, 0)]]) is not None  # a stroke along the border


def test_clear_and_undo_buttons(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    pad.draw_strokes(example_strokes("7-bar"))
    pad.undo_button.click()
    assert pad.strokes == example_strokes("7") and pad.prediction is not None
    pad.clear_button.click()
    assert pad.prediction is None and "Draw a digit" in pad.view.headline.value


def test_pad_says_not_sure_below_the_threshold() -> None:
    probs = [0.05] * 10
    probs[4] = 0.55
    pad = DigitPad(Fixed(probs), mean=MEAN, std=STD, threshold=0.6)
    p = pad.draw_strokes(example_strokes("1"))
    assert not p.sure
    assert "Not sure" in pad.view.headline.value and "mnist-pad-not-sure" in pad.view.headline.value
    assert ">4</span>" in pad.view.headline.value  # the best guess is still shown, as a guess
    sure = DigitPad(Fixed(probs), mean=MEAN, std=STD, threshold=0.5)
    sure.draw_strokes(example_strokes("1"))
    assert "I read" in sure.view.headline.value and "Not sure" not in sure.view.headline.value


def test_callback_errors_become_a_message(model) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    pad = DigitPad(Broken(), mean=MEAN, std=STD)
    send(pad, "mouse_down", 100, 100)
    send(pad, "mouse_up", 100, 200)  # must not raise into the kernel
    assert pad.prediction is None and "boom" in pad.view.headline.value
    assert not pad.drawing.strokes.pen_down


def test_pad_is_a_widget_that_composes(model) -> None:
    import ipywidgets as widgets

    pad = DigitPad(model, mean=MEAN, std=STD)
    box = widgets.HBox([pad, widgets.Label("next to it")])
    assert isinstance(pad, widgets.DOMWidget) and box.children[0] is pad
    assert isinstance(PredictionView(), widgets.DOMWidget)


def test_front_ends_without_widgets_get_a_hint(model) -> None:
    bundle = DigitPad(model, mean=MEAN, std=STD)._repr_mimebundle_()
    assert bundle["text/plain"] == pad_module.NO_WIDGETS  # shown whole: ipywidgets cuts at 110
    assert len(pad_module.NO_WIDGETS) <= 110


def test_pad_takes_a_checkpoint(tmp_path) -> None:
    ckpts = pytest.importorskip("mnistlib.checkpoints")
    models = pytest.importorskip("mnistlib.models")
    torch.manual_seed(0)
    path = tmp_path / "best_model_20240101_000000.pth"
    net = models.get_model("classic")
    ckpts.save_checkpoint(path, net, name="classic", history={"val_acc": [0.5, 0.75]}, mean=0.2, std=0.4)
    pad = DigitPad(ckpts.load_checkpoint(path))
    assert (pad.mean, pad.std) == (0.2, 0.4)
    assert "classic" in pad.status.value and "75.0%" in pad.status.value and path.name in pad.status.value
    assert pad.draw_strokes(example_strokes("1")) is not None


def test_pad_refuses_what_it_cannot_use(model) -> None:
    with pytest.raises(TypeError, match="load_checkpoint"):
        DigitPad("best_model.pth")
    with pytest.raises(TypeError, match="mean= and std="):
        DigitPad(model)


# ------------------------------------------------------------------------ labelled collection


def test_collect_saves_labelled_drawings(model, tmp_path) -> None:
    pad = CollectingPad(model, mean=MEAN, std=STD, store=tmp_path / "mine")
    panel = pad.collection
    assert "Next, please draw a <b>0</b>" in panel.prompt.value
    panel.buttons[3].click()  # nothing drawn yet: nothing saved
    assert "Draw a digit first" in panel.prompt.value and panel.store.counts() == [0] * 10
    pad.draw_strokes(example_strokes("7"))
    panel.buttons[7].click()
    pad.draw_strokes(example_strokes("1"))
    panel.buttons[1].click()
    assert pad.strokes == [] and pad.prediction is None  # cleared for the next one
    store = HandwritingStore(tmp_path / "mine")
    assert [s.label for s in store.drawings()] == [7, 1]
    assert store.drawings()[0].strokes == [[list(p) for p in s] for s in example_strokes("7")]
    assert "<b>1</b>:&nbsp;1" in panel.counts.value and "<b>7</b>:&nbsp;1" in panel.counts.value
    assert "Next, please draw a <b>0</b>" in panel.prompt.value
    panel.undo_button.click()
    assert [s.label for s in store.drawings()] == [7] and "Removed" in panel.prompt.value


def test_collect_reports_a_full_disk(model, tmp_path, monkeypatch) -> None:
    pad = CollectingPad(model, mean=MEAN, std=STD, store=HandwritingStore(tmp_path))
    pad.draw_strokes(example_strokes("7"))
    pad.collection.buttons[7].click()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mnistlib.handwriting.store.write_bytes", full)
    pad.draw_strokes(example_strokes("1"))
    pad.collection.buttons[1].click()
    assert "No space left" in pad.collection.prompt.value and "safe" in pad.collection.prompt.value
    assert pad.strokes != []  # the drawing stays on the canvas, to save again later
    monkeypatch.undo()
    assert [s.label for s in HandwritingStore(tmp_path).drawings()] == [7]


# ------------------------------------------------------------------------ Colab


def test_colab_widget_manager_is_enabled_only_in_colab(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert enable_colab_widgets() is False  # anywhere else: nothing to do, nothing imported
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(True))
    colab = types.ModuleType("google.colab")
    colab.output = output
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert enable_colab_widgets() is True and calls == [True]


# ------------------------------------------------------------------------ arguments out of range


@pytest.mark.parametrize(("options", "name"), [
    ({"size": 0}, "size"), ({"size": -5}, "size"), ({"size": 1_000_000}, "size"), ({"size": 280.5}, "size"),
    ({"size": True}, "size"), ({"size": "280"}, "size"),
    ({"throttle": -1}, "throttle"), ({"throttle": float("nan")}, "throttle"), ({"throttle": "fast"}, "throttle"),
    ({"brush": 0}, "brush"), ({"brush": -3}, "brush"), ({"brush": 10_000}, "brush"), ({"brush": float("inf")}, "brush"),
    ({"threshold": 1.5}, "threshold"), ({"threshold": -0.1}, "threshold"),
])
def test_pad_arguments_out_of_range_are_one_line_errors(options: dict, name: str, model) -> None:
    """A ValueError naming the argument and what it accepts, before any canvas or image is made."""
    makers = [lambda: DigitPad(model, mean=MEAN, std=STD, **options)]
    if name != "threshold":  # the canvas alone has no threshold
        makers.append(lambda: DrawingCanvas(lambda pixels: None, **options))
    for make in makers:
        with pytest.raises(ValueError, match=rf"^{name} ") as info:
            make()
        assert "\n" not in str(info.value) and ("from" in str(info.value) or "at least" in str(info.value))


def test_the_largest_and_smallest_pads_are_accepted(model) -> None:
    assert DigitPad(model, mean=MEAN, std=STD, size=28, brush=1, throttle=0).size == 28
    assert DigitPad(model, mean=MEAN, std=STD, size=2048, brush=1024, throttle=float("inf")).brush == 1024
