"""Lesson 05: MNIST-faithful preprocessing, predict_image on awkward files, and the DigitPad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from torch import nn

from mnistlib import drawing as d
from mnistlib.drawing import DigitPad, DrawingError, Prediction, predict_image, prepare_digit

MEAN, STD = 0.1307, 0.3081


def tiny_model() -> nn.Module:
    """A seeded, untrained model mapping [N,1,28,28] → [N,10]: enough to test the plumbing."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


def canvas(strokes_name: str = "7", size: int = 280) -> np.ndarray:
    return d.rasterize(d.example_strokes(strokes_name, size), size, brush=20 * size / 280)


def assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text


# ------------------------------------------------------------------------ the MNIST recipe


def test_prepared_digit_is_mnist_shaped() -> None:
    img = prepare_digit(canvas("7"))
    assert img.shape == (28, 28) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == pytest.approx(1.0)
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20  # longer side → 20 px
    cy, cx = d._centre_of_mass(img)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # centre of mass on MNIST's centre


def test_steps_are_returned_for_the_lesson() -> None:
    steps = prepare_digit(canvas("1"), steps=True)
    assert list(steps) == list(d.STEP_TITLES)
    h, w = steps["scaled"].shape
    assert h == 20 and w < 20  # a "1" is tall and thin: aspect ratio kept
    ch, cw = steps["cropped"].shape
    assert abs(w / h - cw / ch) < 0.1


def test_position_and_colours_do_not_matter() -> None:
    """Same strokes, shifted and drawn black on white instead of white on black: same 28×28."""
    ink = canvas("7")
    moved = np.zeros((400, 500), np.uint8)
    moved[70:350, 150:430] = ink
    paper = 255 - moved
    ref = prepare_digit(ink)
    np.testing.assert_allclose(prepare_digit(moved), ref, atol=1e-5)
    np.testing.assert_allclose(prepare_digit(paper), ref, atol=1e-5)
    rgb = np.stack([paper] * 3, axis=-1)
    np.testing.assert_allclose(prepare_digit(rgb), ref, atol=1e-2)


def test_size_does_not_matter_much() -> None:
    ref = prepare_digit(canvas("7", size=280))
    for size in (420, 560):
        bigger = prepare_digit(canvas("7", size=size))
        assert np.corrcoef(ref.ravel(), bigger.ravel())[0, 1] > 0.95


def test_naive_28_keeps_position() -> None:
    naive = d.naive_28(canvas("small-1-corner"))
    prepared = prepare_digit(canvas("small-1-corner"))
    assert naive.shape == (28, 28)
    assert d._centre_of_mass(naive)[1] > 20  # still in the right-hand corner
    assert abs(d._centre_of_mass(prepared)[1] - 14) <= 0.5


def test_real_mnist_digits_survive_the_round_trip() -> None:
    """Enlarge real MNIST digits 10×, draw them black on white off-centre: the recipe recovers them."""
    data = pytest.importorskip("mnistlib.data")
    try:
        images, _ = data.mnist_tensors(train=False)
    except Exception as exc:  # no data on this machine
        pytest.skip(f"MNIST not available: {exc}")
    cors = []
    for a in images[:200].numpy():
        big = np.asarray(Image.fromarray(a).resize((280, 280), Image.Resampling.NEAREST))
        page = np.full((400, 400), 255, np.uint8)
        page[60:340, 30:310] = 255 - big
        cors.append(np.corrcoef(prepare_digit(page).ravel(), a.ravel() / 255.0)[0, 1])
    assert np.median(cors) > 0.98 and np.percentile(cors, 5) > 0.9


def test_preprocess_normalises() -> None:
    x = d.preprocess(canvas("1"), MEAN, STD)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x.min().item() == pytest.approx(-MEAN / STD)
    assert x.max().item() == pytest.approx((1 - MEAN) / STD, rel=1e-4)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((280, 280), np.uint8), "blank"),
        (np.full((280, 280), 255, np.uint8), "blank"),
        (np.full((1, 1), 128, np.uint8), "blank"),
        (np.zeros((0, 0)), "empty"),
        (np.zeros((5, 5, 7)), "shape"),
        (np.zeros(10), "shape"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_arrays_give_one_line_messages(array: np.ndarray, words: str) -> None:
    with pytest.raises(DrawingError, match=words) as info:
        prepare_digit(array)
    assert_one_line(info.value)


def test_awkward_arrays_are_read() -> None:
    ink = canvas("1")
    ref = prepare_digit(ink)
    variants = [
        ink.astype(bool),
        ink.astype(np.uint16) * 257,
        ink.astype(np.float64) / 255,
        ink.astype(np.int64) * 1000 - 7,  # unknown range: stretched
        torch.from_numpy(ink.copy())[None, None],  # a [1, 1, H, W] tensor
        np.stack([ink, ink, ink]),  # channels first
    ]
    for v in variants:
        np.testing.assert_allclose(prepare_digit(v), ref, atol=2e-2)


def test_transparent_drawings_composite_against_the_ink() -> None:
    ink = canvas("7")
    ref = prepare_digit(ink)
    black_on_clear = np.zeros((280, 280, 4), np.uint8)
    black_on_clear[..., 3] = ink  # black marks, transparent elsewhere
    white_on_clear = black_on_clear.copy()
    white_on_clear[..., :3] = 255
    for rgba in (black_on_clear, white_on_clear):
        np.testing.assert_allclose(prepare_digit(rgba), ref, atol=1e-2)
    with pytest.raises(DrawingError, match="transparent"):
        prepare_digit(np.zeros((10, 10, 4), np.uint8))


# ------------------------------------------------------------------------ image files


def save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


@pytest.fixture(scope="module")
def seven() -> Image.Image:
    return Image.fromarray(255 - canvas("7"))  # black on white, like a scan


def test_file_formats_agree(tmp_path, model, seven: Image.Image) -> None:
    ref = predict_image(np.asarray(seven), model, mean=MEAN, std=STD)
    ink = 255 - np.asarray(seven)
    rgba = Image.new("RGBA", seven.size, (0, 0, 0, 0))
    rgba.putalpha(Image.fromarray(ink))
    sixteen = Image.fromarray(np.asarray(seven).astype(np.uint16) * 257)
    files = {
        "png": save(seven, tmp_path / "a.png"),
        "jpeg": save(seven.convert("RGB"), tmp_path / "a.jpg", quality=90),
        "rgba": save(rgba, tmp_path / "rgba.png"),
        "palette": save(seven.convert("RGB").convert("P"), tmp_path / "p.png"),
        "1-bit": save(seven.convert("1"), tmp_path / "b.png"),
        "16-bit": save(sixteen, tmp_path / "16.png"),
        "cmyk": save(seven.convert("CMYK"), tmp_path / "c.tiff"),
    }
    assert Image.open(files["16-bit"]).mode.startswith("I;16")
    for kind, path in files.items():
        p = predict_image(path, model, mean=MEAN, std=STD)
        assert isinstance(p, Prediction)
        assert p.digit == ref.digit, kind
        assert np.abs(p.image28 - ref.image28).mean() < 0.05, kind
        assert p.probabilities.sum() == pytest.approx(1.0)


def test_huge_image_is_reduced_not_refused(tmp_path, model) -> None:
    big = Image.new("L", (10_000, 10_000), 255)
    big.paste(Image.fromarray(255 - canvas("1", size=2800)), (3000, 4000))
    path = save(big, tmp_path / "huge.png")
    del big
    p = predict_image(path, model, mean=MEAN, std=STD)
    ref = predict_image(255 - canvas("1"), model, mean=MEAN, std=STD)
    assert np.abs(p.image28 - ref.image28).mean() < 0.05


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_text("not an image at all"), "not an image"),
        (lambda p: p.write_bytes(b""), "not an image"),
        (lambda p: Image.new("L", (1, 1), 0).save(p, format="PNG"), "blank"),
        (lambda p: Image.new("L", (64, 64), 255).save(p, format="PNG"), "blank"),
        (lambda p: Image.new("RGB", (64, 64), 0).save(p, format="PNG"), "blank"),
        (lambda p: Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(p, format="PNG"), "transparent"),
        (lambda p: p.mkdir(), "folder"),
        (lambda p: None, "No such file"),
    ],
)
def test_bad_files_give_one_line_messages(tmp_path, model, make, words: str) -> None:
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(DrawingError, match=words) as info:
        predict_image(path, model, mean=MEAN, std=STD)
    assert_one_line(info.value)


def test_truncated_file(tmp_path, model, seven: Image.Image) -> None:
    full = tmp_path / "full.png"
    seven.save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(DrawingError) as info:
        predict_image(cut, model, mean=MEAN, std=STD)
    assert_one_line(info.value)


def test_oversized_file_refused_without_decoding(tmp_path, monkeypatch, model) -> None:
    monkeypatch.setattr(d, "MAX_PIXELS", 50 * 50)
    path = save(Image.new("L", (100, 100), 255), tmp_path / "big.png")
    with pytest.raises(DrawingError, match="too large") as info:
        predict_image(path, model, mean=MEAN, std=STD)
    assert_one_line(info.value)


# ------------------------------------------------------------------------ property-based

DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_]
)
ARRAYS = DTYPES.flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
        elements=None,
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ARRAYS)
def test_preprocess_never_crashes(a: np.ndarray) -> None:
    try:
        x = d.preprocess(a, MEAN, STD)
    except DrawingError as exc:
        assert_one_line(exc)
    else:
        assert x.shape == (1, 1, 28, 28) and torch.isfinite(x).all()
        img = (x * STD + MEAN).numpy()
        assert img.min() >= -1e-5 and img.max() <= 1 + 1e-5


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 60), st.integers(1, 60), st.sampled_from([1, 2, 3, 4])),
    )
)
def test_predictor_never_crashes(a: np.ndarray) -> None:
    try:
        p = predict_image(a, tiny_model(), mean=MEAN, std=STD)
    except DrawingError as exc:
        assert_one_line(exc)
    else:
        assert 0 <= p.digit <= 9 and p.probabilities.sum() == pytest.approx(1.0)


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


# ------------------------------------------------------------------------ the pad


def send(pad: DigitPad, event: str, x: float = 0, y: float = 0, touches=None) -> None:
    """Deliver a front-end event exactly as ipycanvas does when the browser sends it."""
    content = {"event": event, "x": x, "y": y}
    if touches is not None:
        content = {"event": event, "touches": [{"x": tx, "y": ty} for tx, ty in touches]}
    pad.canvas._handle_frontend_event(None, content, [])


def test_pad_starts_empty_and_asks_for_a_drawing(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    assert pad.prediction is None and pad.probabilities is None
    assert "Draw a digit" in pad.prediction_html.value
    assert "mnist-pad-prediction" in pad.prediction_html._dom_classes
    pad.update()  # clicking around without drawing changes nothing
    assert pad.prediction is None


def test_pad_draw_strokes_matches_predict_image(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    p = pad.draw_strokes(d.example_strokes("7"))
    ref = predict_image(canvas("7"), model, mean=MEAN, std=STD)
    assert p is pad.prediction and p.digit == ref.digit
    np.testing.assert_allclose(pad.probabilities, ref.probabilities, atol=1e-6)
    assert f">{p.digit}</span>" in pad.prediction_html.value
    assert pad.seen.value[:4] == b"\x89PNG"
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
    assert not pad._pen_down and pad.prediction is not None
    send(pad, "mouse_move", 100, 200)
    assert len(pad.strokes) == 1


def test_touch_end_without_points_uses_the_last_move(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD, throttle=3600)
    send(pad, "touch_start", touches=[(140, 40)])
    send(pad, "touch_move", touches=[(140, 240)])
    send(pad, "touch_end", touches=[])
    assert pad.strokes == [[(140.0, 40.0), (140.0, 240.0)]] and pad.prediction is not None


@pytest.mark.parametrize("name", ["dot", "small-1-corner", "1", "7-bar"])
def test_dots_corners_and_borders_get_an_answer(model, name: str) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    assert pad.draw_strokes(d.example_strokes(name)) is not None
    pad.clear()
    assert pad.draw_strokes([[(0, 0), (280, 0)]]) is not None  # a stroke along the border


def test_clear_button(model) -> None:
    pad = DigitPad(model, mean=MEAN, std=STD)
    pad.draw_strokes(d.example_strokes("1"))
    pad.clear_button.click()
    assert pad.prediction is None and "Draw a digit" in pad.prediction_html.value


def test_callback_errors_become_a_message(model) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    pad = DigitPad(Broken(), mean=MEAN, std=STD)
    send(pad, "mouse_down", 100, 100)
    send(pad, "mouse_up", 100, 200)  # must not raise into the kernel
    assert pad.prediction is None and "boom" in pad.prediction_html.value


def test_pad_is_a_widget_that_composes(model) -> None:
    import ipywidgets as widgets

    pad = DigitPad(model, mean=MEAN, std=STD)
    box = widgets.HBox([pad, widgets.Label("next to it")])
    assert isinstance(pad, widgets.DOMWidget) and box.children[0] is pad


def test_pad_accepts_a_checkpoint_like_object(model) -> None:
    class Ckpt:  # duck-typed like mnistlib.checkpoints.Checkpoint
        def __init__(self) -> None:
            self.model, self.name, self.path = model, "tiny", "tiny.pt"
            self.mean, self.std, self.history = 0.2, 0.4, {"val_acc": [0.5, 0.9]}

    pad = DigitPad(Ckpt())
    assert (pad.loaded.mean, pad.loaded.std) == (0.2, 0.4)
    assert "tiny" in pad.status.value and "90.0%" in pad.status.value


def test_pad_from_a_checkpoint_file(tmp_path) -> None:
    ckpts = pytest.importorskip("mnistlib.checkpoints")
    models = pytest.importorskip("mnistlib.models")
    torch.manual_seed(0)
    path = tmp_path / "best_model_20240101_000000.pth"
    history = {"val_acc": [0.5, 0.75]}
    net = models.get_model("classic")
    ckpts.save_checkpoint(path, net, name="classic", history=history, mean=0.2, std=0.4)
    for source in (path, str(path), ckpts.load_checkpoint(path)):
        pad = DigitPad(source)
        assert (pad.loaded.mean, pad.loaded.std) == (0.2, 0.4)
        assert "classic" in pad.status.value and "75.0%" in pad.status.value
        assert pad.draw_strokes(d.example_strokes("1")) is not None


def test_pad_without_a_model_uses_load_or_train(monkeypatch, model) -> None:
    ckpts = pytest.importorskip("mnistlib.checkpoints")

    class Ckpt:
        def __init__(self) -> None:
            self.model, self.name, self.path = model, "quick", None
            self.mean, self.std, self.history = MEAN, STD, {}

    monkeypatch.setattr(ckpts, "load_or_train", lambda *a, **k: Ckpt())
    pad = DigitPad()
    assert "quick" in pad.status.value
