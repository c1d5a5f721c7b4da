"""Lesson 05: MNIST-faithful preprocessing, predict_image on awkward files, "not sure" answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from small_models import MEAN, STD, Fixed, tiny_model
from torch import nn

from mnistlib import drawing as d
from mnistlib.drawing import DrawingError, Prediction, predict_image, prepare_digit
from mnistlib.strokes import example_strokes, rasterize


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


def canvas(strokes_name: str = "7", size: int = 280) -> np.ndarray:
    return rasterize(example_strokes(strokes_name, size), size, brush=20 * size / 280)


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
    monkeypatch.setattr("mnistlib._support.images.MAX_PIXELS", 50 * 50)
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


# ------------------------------------------------------------------------ tensors of every kind


def _tensor_cases() -> dict[str, object]:
    """Tensors a learner may hand over: odd dtypes, layouts and devices (each once escaped as a raw error)."""
    ink = torch.from_numpy(canvas("7").copy())
    cases = {
        "bfloat16": ink.bfloat16(),
        "float8": ink.float().to(torch.float8_e4m3fn),
        "sparse-coo": ink.to_sparse(),
        "sparse-csr": ink.float().to_sparse_csr(),
        "quantized": torch.quantize_per_tensor(ink.float(), 1.0, 0, torch.quint8),
        "meta": torch.zeros(28, 28, device="meta"),
        "nested": torch.nested.nested_tensor([torch.zeros(3, 3), torch.zeros(4, 4)]),
        "pil-0x0": Image.new("L", (0, 0)),
        "pil-0x5": Image.new("L", (0, 5)),
        "pil-rgba-0x0": Image.new("RGBA", (0, 0)),
        "empty-path": "",
    }
    return cases


TENSOR_CASES = ("bfloat16", "float8", "sparse-coo", "sparse-csr", "quantized", "meta", "nested", "pil-0x0",
                "pil-0x5", "pil-rgba-0x0", "empty-path")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_tensor_case_is_tested() -> None:
    assert set(TENSOR_CASES) == set(_tensor_cases())


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's beta/prototype notices for these layouts
@pytest.mark.parametrize("name", TENSOR_CASES)
def test_no_input_escapes_drawing_error(name: str, model) -> None:
    """Whatever the dtype, layout or device: a prediction or one line of DrawingError, never a raw error."""
    value = _tensor_cases()[name]
    try:
        p = predict_image(value, model, mean=MEAN, std=STD)
    except DrawingError as exc:
        assert_one_line(exc)
    else:
        assert p.probabilities.shape == (10,)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "make",
    [
        lambda ink: ink.bool(),
        lambda ink: ink.long(),
        lambda ink: ink.half(),
        lambda ink: ink.bfloat16(),
        lambda ink: ink.t().contiguous().t(),  # non-contiguous
        lambda ink: ink.to_sparse(),
        lambda ink: ink[None, None].float().repeat(1, 3, 1, 1).contiguous(memory_format=torch.channels_last),
        lambda ink: torch.quantize_per_tensor(ink.float(), 1.0, 0, torch.quint8),
    ],
)
def test_tensors_of_any_dtype_and_layout_read_the_same(make) -> None:
    ink = torch.from_numpy(canvas("1").copy())
    np.testing.assert_allclose(prepare_digit(make(ink)), prepare_digit(canvas("1")), atol=2e-2)


@pytest.mark.parametrize(
    "value, words",
    [
        (torch.zeros(0, 0), "empty"),
        (torch.full((8, 8), float("nan")), "NaN"),
        (torch.zeros(8, 8, dtype=torch.complex64), "dtype"),
        (Image.new("L", (0, 0)), "empty"),
        (torch.zeros(28, 28, device="meta"), "meta"),
    ],
)
def test_unreadable_tensors_say_why(value, words: str) -> None:
    with pytest.raises(DrawingError, match=words) as info:
        prepare_digit(value)
    assert_one_line(info.value)


# ------------------------------------------------------------------------ "not sure" and models


def test_low_confidence_says_not_sure() -> None:
    probs = [0.05] * 10
    probs[7] = 0.55
    p = predict_image(canvas("7"), Fixed(probs), mean=MEAN, std=STD)
    assert p.digit == 7 and p.confidence == pytest.approx(0.55)
    assert not p.sure and str(p) == "not sure (maybe 7, 55%)"
    lenient = predict_image(canvas("7"), Fixed(probs), mean=MEAN, std=STD, threshold=0.5)
    assert lenient.sure and str(lenient) == "7 (55% sure)"


def test_probability_plot_titles_say_what_the_model_reads_or_that_it_is_not_sure() -> None:
    import matplotlib.pyplot as plt

    image = np.zeros((28, 28), np.float32)
    sure = Prediction(7, np.eye(10)[7] * 0.9 + 0.01, image)
    torn = Prediction(1, np.array([0, 0.48, 0, 0, 0.04, 0, 0, 0.48, 0, 0]), image)
    fig = d.plot_probabilities({"a": sure, "b": torn})
    titles = [ax.get_title() for ax in fig.axes[1::2]]
    plt.close(fig)
    assert titles == ["the model reads 7 (91% sure)", "the model is not sure (maybe 1, 48%)"]


def test_threshold_must_be_a_probability(model) -> None:
    with pytest.raises(ValueError, match="threshold"):
        predict_image(canvas("7"), model, mean=MEAN, std=STD, threshold=60)


def test_checkpoint_supplies_its_normalisation(model) -> None:
    class Ckpt:  # duck-typed like mnistlib.checkpoints.Checkpoint
        def __init__(self) -> None:
            self.model, self.mean, self.std = model, 0.2, 0.4

    via_ckpt = predict_image(canvas("7"), Ckpt())
    direct = predict_image(canvas("7"), model, mean=0.2, std=0.4)
    np.testing.assert_allclose(via_ckpt.probabilities, direct.probabilities)


def test_model_loading_is_the_callers_job(model) -> None:
    with pytest.raises(TypeError, match="mean= and std="):
        predict_image(canvas("7"), model)
    with pytest.raises(TypeError, match="load_checkpoint"):
        predict_image(canvas("7"), "best_model.pth")


def test_classify_leaves_the_models_mode_alone() -> None:
    net = tiny_model().train()
    d.classify(prepare_digit(canvas("7")), net, MEAN, STD)
    assert net.training


def test_a_closed_pillow_image_is_one_line(model) -> None:
    img = Image.fromarray(rasterize(example_strokes("7")))
    img.close()
    with pytest.raises(DrawingError, match="closed") as info:
        predict_image(img, model, mean=MEAN, std=STD)
    assert_one_line(info.value)
