"""Lesson 05: draw a digit, and prepare any image the way MNIST digits were prepared.

MNIST digits were made by scaling each digit's bounding box to fit 20×20 pixels (keeping the
aspect ratio, with anti-aliasing) and pasting it into a 28×28 frame so that its centre of mass
sits at the centre. A model trained on MNIST reads a new digit well only when the digit is
prepared the same way, so every input — the drawing pad, ``predict_image`` and the CLI's
``predict`` — goes through one function, :func:`prepare_digit`:

grayscale → invert when the ink is darker than the background → crop to the ink's bounding box →
scale the longer side to 20 px → centre of mass to the centre of 28×28 → normalise.

Bad input never ends in a traceback: it raises :class:`DrawingError`, whose message is one line.
"""

from __future__ import annotations

import html
import io
import math
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from ipycanvas import Canvas, hold_canvas
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torch import nn

from .devices import model_device

__all__ = [
    "DigitPad",
    "DrawingError",
    "LoadedModel",
    "Prediction",
    "STEP_TITLES",
    "centre_in_frame",
    "centre_of_mass",
    "classify",
    "example_strokes",
    "load_image",
    "naive_28",
    "plot_predictions",
    "plot_steps",
    "predict_image",
    "prepare_digit",
    "preprocess",
    "rasterize",
    "resolve_model",
    "to_gray",
]

#: The MNIST training set's pixel mean and standard deviation (fallback when neither a
#: checkpoint nor ``mnistlib.data`` can provide them).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FRAME = 28  #: MNIST images are 28×28 …
BOX = 20  #: … with the digit's longer side scaled to 20 px.
MAX_SIDE = 2048  #: larger inputs are box-reduced to this size first (plenty for a 20 px digit)
MAX_PIXELS = 120_000_000  #: refuse image files larger than this (a 10,000×10,000 scan is fine)
MIN_CONTRAST = 0.08  #: ink must differ from the background by this much (of full scale)
NOISE = 0.1  #: after stretching, ink fainter than this counts as background

Strokes = Sequence[Sequence[tuple[float, float]]]


class DrawingError(ValueError):
    """An input that cannot be read as a digit; the message is one line meant for the learner."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------------
# Reading any input as a grayscale array in 0..1
# --------------------------------------------------------------------------------------------


def load_image(path: str | Path) -> Image.Image:
    """Open an image file (PNG, JPEG, …) safely, or raise :class:`DrawingError` saying why not."""
    path = Path(path).expanduser()
    name = path.name or str(path)
    if not path.exists():
        raise DrawingError(f"No such file: {path}")
    if path.is_dir():
        raise DrawingError(f"{path} is a folder, not an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise DrawingError(
                    f"{name} is too large ({w}×{h} px, limit {MAX_PIXELS // 1_000_000} "
                    "megapixels): shrink it first."
                )
            img.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at a reduced scale: cheap
            img.load()
            img = ImageOps.exif_transpose(img) or img  # phone photos: honour the orientation
    except DrawingError:
        raise
    except Image.DecompressionBombError:
        raise DrawingError(f"{name} is too large to open safely: shrink it first.") from None
    except UnidentifiedImageError:
        raise DrawingError(f"{name} is not an image file Pillow can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DrawingError(f"Could not read {name}: {exc}") from None
    return img


def _scale_to_unit(a: np.ndarray) -> np.ndarray:
    """Numbers of any dtype → float32 in 0..1, guessing the range (8-bit, 16-bit, 0..1, other)."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    f = a.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise DrawingError("The image contains NaN or infinite values.")
    lo, hi = float(f.min()), float(f.max())
    if lo >= 0 and hi <= 1:
        out = f
    elif lo >= 0 and hi <= 255:
        out = f / 255.0
    elif lo >= 0 and hi <= 65535:
        out = f / 65535.0
    elif hi > lo:  # unknown range: stretch (halves avoid overflow near the float64 limits)
        out = (f / 2 - lo / 2) / (hi / 2 - lo / 2)
    else:
        out = np.zeros_like(f)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _array_channels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a scaled 2-D/3-D array into (gray, alpha or None)."""
    if a.ndim == 2:
        return a, None
    c = a.shape[-1]
    if c == 1:
        return a[..., 0], None
    if c == 2:
        return a[..., 0], a[..., 1]
    rgb = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114  # ITU-R 601, like Pillow
    return rgb.astype(np.float32), (a[..., 3] if c == 4 else None)


def _composite(gray: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Flatten transparency onto a background that contrasts with the visible ink."""
    if alpha is None or float(alpha.min()) >= 1.0:
        return gray
    weight = float(alpha.sum())
    if weight <= 0:
        raise DrawingError("The image is fully transparent: there is nothing to read.")
    ink_level = float((gray * alpha).sum()) / weight
    background = 1.0 if ink_level < 0.5 else 0.0  # dark marks go on white, light marks on black
    return (gray * alpha + background * (1.0 - alpha)).astype(np.float32)


def _block_reduce(a: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Average blocks of pixels so the longer side is at most ``max_side``."""
    factor = math.ceil(max(a.shape) / max_side)
    if factor <= 1:
        return a
    h, w = a.shape
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    return a.reshape(a.shape[0] // factor, factor, a.shape[1] // factor, factor).mean(axis=(1, 3))


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    """A Pillow image of any mode → float32 grayscale in 0..1 (transparency flattened)."""
    sixteen_bit = img.mode.startswith("I;16")
    if sixteen_bit:
        img = img.convert("I")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif img.mode == "La":
        img = img.convert("LA")
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, …
    if img.mode == "RGB":
        img = img.convert("L")
    elif img.mode == "RGBA":
        img = img.convert("LA")
    if max(img.size) > MAX_SIDE:
        img = img.reduce(math.ceil(max(img.size) / MAX_SIDE))
    a = np.asarray(img)
    if img.mode in ("L", "LA"):
        a = a.astype(np.float32) / 255.0
    elif sixteen_bit:
        a = np.clip(a.astype(np.float32) / 65535.0, 0.0, 1.0)
    else:
        a = _scale_to_unit(a)
    gray, alpha = _array_channels(a)
    return _composite(gray, alpha)


def _array_to_gray(x: Any) -> np.ndarray:
    """A numpy array / torch tensor / nested list → float32 grayscale in 0..1."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DrawingError(f"Cannot read this as an image: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise DrawingError(f"Expected numbers (an image array), got dtype {a.dtype}.")
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        a = a.astype(np.float64)
    while a.ndim > 3 and a.shape[0] == 1:  # a batch of one: [1, 1, H, W]
        a = a[0]
    if a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4) and a.shape[0] in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first (torch layout) → channels last
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4)):
        raise DrawingError(
            f"Expected a 2-D grayscale or 3-D colour image, got an array of shape {a.shape}."
        )
    if a.size == 0:
        raise DrawingError(f"The image is empty (shape {a.shape}).")
    gray, alpha = _array_channels(_scale_to_unit(a))
    gray = _composite(gray, alpha)
    return _block_reduce(gray).astype(np.float32)


def to_gray(image: Any) -> np.ndarray:
    """Read a path, Pillow image, numpy array or tensor as a float32 grayscale array in 0..1."""
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_gray(image)
    return _array_to_gray(image)


# --------------------------------------------------------------------------------------------
# The MNIST recipe
# --------------------------------------------------------------------------------------------


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels on the image's outer edge."""
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def _ink(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Turn grayscale into 'ink' (background 0, strongest ink 1); also say if it was inverted."""
    background = float(np.median(_border(gray)))
    lo, hi = float(gray.min()), float(gray.max())
    inverted = (background - lo) > (hi - background)  # ink darker than the paper: invert
    contrast = (background - lo) if inverted else (hi - background)
    if contrast < MIN_CONTRAST:
        raise DrawingError("No digit found: the image is blank (one colour, no ink).")
    ink = (background - gray) if inverted else (gray - background)
    ink = np.clip(ink / contrast, 0.0, 1.0)
    ink[ink < NOISE] = 0.0
    return ink.astype(np.float32), inverted


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of a float array to ``size`` = (width, height)."""
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    out = np.asarray(img.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    out = np.clip(out, 0.0, 1.0)
    if out.max() <= 0:  # Lanczos ringing can swallow a lone faint pixel; a box filter cannot
        out = np.asarray(img.resize(size, Image.Resampling.BOX), dtype=np.float32)
    return out


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted centre, in pixel-index coordinates."""
    total = float(a.sum())
    if total <= 0:
        return (a.shape[0] - 1) / 2, (a.shape[1] - 1) / 2
    rows = np.arange(a.shape[0], dtype=np.float64)
    cols = np.arange(a.shape[1], dtype=np.float64)
    return float(a.sum(axis=1) @ rows) / total, float(a.sum(axis=0) @ cols) / total


_centre_of_mass = centre_of_mass  # the name the tests and older code use


def centre_in_frame(digit: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Paste ``digit`` (at most ``frame`` pixels a side) into a blank ``frame``×``frame`` image so
    that its centre of mass lands on pixel (frame/2, frame/2) — where MNIST's centres of mass lie
    (13.5–14.5, measured) — by an integer shift, clamped so that no ink falls off the frame."""
    h, w = digit.shape
    if h > frame or w > frame:
        raise DrawingError(f"a {w}×{h} digit does not fit a {frame}×{frame} frame")
    cy, cx = centre_of_mass(digit)
    centre = frame / 2
    top = min(max(round(centre - cy), 0), frame - h)
    left = min(max(round(centre - cx), 0), frame - w)
    out = np.zeros((frame, frame), dtype=np.float32)
    out[top : top + h, left : left + w] = digit
    return out


#: Titles for the intermediate images returned by ``prepare_digit(..., steps=True)``.
STEP_TITLES = {
    "gray": "grayscale",
    "ink": "ink = white on black",
    "cropped": "cropped to the ink",
    "scaled": "longer side = 20 px",
    "centred": "centre of mass centred",
}


def prepare_digit(image: Any, *, steps: bool = False) -> Any:
    """Prepare any image like an MNIST digit: a float32 [28, 28] array in 0..1 (ink = 1).

    With ``steps=True`` return a dict of the intermediate arrays (see ``STEP_TITLES``) instead.
    Raises :class:`DrawingError` (one-line message) for input that holds no readable digit.
    """
    gray = to_gray(image)
    ink, _ = _ink(gray)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    cropped = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = cropped.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = _resize(cropped, (new_w, new_h))
    scaled /= max(float(scaled.max()), 1e-6)
    frame = centre_in_frame(scaled)
    if steps:
        return {"gray": gray, "ink": ink, "cropped": cropped, "scaled": scaled, "centred": frame}
    return frame


def naive_28(image: Any) -> np.ndarray:
    """The *unprepared* version: the whole image squashed to 28×28 (ink = 1), no crop or centring."""
    ink, _ = _ink(to_gray(image))
    return _resize(ink, (FRAME, FRAME))


def _default_stats() -> tuple[float, float]:
    """The training set's mean and std from ``mnistlib.data``, else the published constants."""
    try:
        from mnistlib.data import normalization_constants

        mean, std = normalization_constants()
        return float(mean), float(std)
    except Exception:  # no data yet, or no data module: the constants are well known
        return MNIST_MEAN, MNIST_STD


def preprocess(image: Any, mean: float | None = None, std: float | None = None) -> torch.Tensor:
    """Any image → the normalised float32 tensor [1, 1, 28, 28] an MNIST model expects."""
    if mean is None or std is None:
        d_mean, d_std = _default_stats()
        mean = d_mean if mean is None else mean
        std = d_std if std is None else std
    x = torch.from_numpy(prepare_digit(image))
    return ((x - float(mean)) / float(std)).reshape(1, 1, FRAME, FRAME)


# --------------------------------------------------------------------------------------------
# Predicting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """A model's answer for one image: the digit, all ten probabilities, the 28×28 it saw."""

    digit: int
    probabilities: np.ndarray
    image28: np.ndarray

    @property
    def confidence(self) -> float:
        """Probability of the predicted digit."""
        return float(self.probabilities[self.digit])

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most likely digits with their probabilities, most likely first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]

    def __str__(self) -> str:
        return f"{self.digit} ({self.confidence:.0%} sure)"


@dataclass
class LoadedModel:
    """A model ready to predict, with the normalisation it was trained with."""

    model: nn.Module
    mean: float
    std: float
    description: str
    trained_now: bool = False


def _is_checkpoint(obj: Any) -> bool:
    return isinstance(getattr(obj, "model", None), nn.Module) and hasattr(obj, "mean")


def _describe_checkpoint(ckpt: Any) -> str:
    name = getattr(ckpt, "name", None) or type(ckpt.model).__name__
    path = getattr(ckpt, "path", None)
    text = f"model {name!r}"
    if path:
        text += f" from {Path(path).name}"
    accs = (getattr(ckpt, "history", None) or {}).get("val_acc") or []
    try:
        text += f" (validation accuracy {max(accs):.1%})" if accs else ""
    except (TypeError, ValueError):
        pass
    return text


def resolve_model(
    source: Any = None, mean: float | None = None, std: float | None = None
) -> LoadedModel:
    """A model, a Checkpoint, a checkpoint path, or None (newest best checkpoint or quick model)."""
    trained_now = False
    if source is None:
        from mnistlib.checkpoints import load_or_train

        source = load_or_train()
    elif isinstance(source, (str, Path)):
        from mnistlib.checkpoints import load_checkpoint

        source = load_checkpoint(source)
    if _is_checkpoint(source):
        model = source.model
        description = _describe_checkpoint(source)
        if trained_now:
            description += " — trained just now, as no checkpoint was found"
        mean = getattr(source, "mean", None) if mean is None else mean
        std = getattr(source, "std", None) if std is None else std
    elif isinstance(source, nn.Module):
        model, description = source, f"model {type(source).__name__} (given directly)"
    else:
        raise TypeError(
            f"Expected an nn.Module, a Checkpoint, a checkpoint path or None, got {type(source)}"
        )
    if mean is None or std is None:
        d_mean, d_std = _default_stats()
        mean = d_mean if mean is None else mean
        std = d_std if std is None else std
    model.eval()
    return LoadedModel(model, float(mean), float(std), description, trained_now)


def classify(image28: np.ndarray, model: nn.Module, mean: float, std: float) -> Prediction:
    """Run a prepared 28×28 image (ink = 1, from ``prepare_digit``/``naive_28``) through a model."""
    x = (torch.as_tensor(image28, dtype=torch.float32) - mean) / std
    x = x.reshape(1, 1, FRAME, FRAME).to(model_device(model))
    model.eval()
    with torch.inference_mode():
        logits = model(x).float().reshape(-1)
        probs = torch.softmax(logits, dim=0).cpu().numpy().astype(np.float64)
    if probs.shape != (10,) or not np.all(np.isfinite(probs)):
        raise DrawingError(f"The model gave {probs.shape[0]} non-finite or non-10 scores.")
    return Prediction(int(np.argmax(probs)), probs, np.asarray(image28, dtype=np.float32))


def predict_image(
    path_or_array: Any,
    model_or_checkpoint: Any = None,
    *,
    mean: float | None = None,
    std: float | None = None,
) -> Prediction:
    """Predict the digit in an image file, Pillow image or array (one recipe for every input).

    ``model_or_checkpoint`` is an ``nn.Module``, a Checkpoint, a checkpoint path, a
    :class:`LoadedModel` or None (the newest best checkpoint, else a quick model).
    Raises :class:`DrawingError` with a one-line message for input holding no readable digit.
    """
    loaded = (
        model_or_checkpoint
        if isinstance(model_or_checkpoint, LoadedModel)
        else resolve_model(model_or_checkpoint, mean, std)
    )
    image28 = prepare_digit(path_or_array)
    return classify(image28, loaded.model, loaded.mean, loaded.std)


def plot_steps(image: Any) -> Any:
    """One figure showing each step of :func:`prepare_digit` on ``image``; returns the figure."""
    import matplotlib.pyplot as plt

    steps = prepare_digit(image, steps=True)
    fig, axes = plt.subplots(1, len(steps), figsize=(2.3 * len(steps), 2.6))
    for ax, (key, img) in zip(axes, steps.items(), strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{STEP_TITLES[key]}\n{img.shape[1]}×{img.shape[0]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    centre = steps["centred"]
    cy, cx = centre_of_mass(centre)
    axes[-1].plot([cx], [cy], "r+", markersize=12)
    fig.tight_layout()
    return fig


def plot_predictions(predictions: dict[str, Prediction]) -> Any:
    """For each titled prediction: the 28×28 image the model saw and its ten probabilities."""
    import matplotlib.pyplot as plt

    n = len(predictions)
    fig, axes = plt.subplots(
        n, 2, figsize=(7, 2.4 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]}
    )
    for (title, p), (ax_img, ax_bar) in zip(predictions.items(), axes, strict=True):
        ax_img.imshow(p.image28, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax_img.set_title(title, fontsize=10)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        colours = ["#d62728" if d == p.digit else "#1f77b4" for d in range(10)]
        ax_bar.bar(range(10), p.probabilities, color=colours)
        ax_bar.set_xticks(range(10))
        ax_bar.set_ylim(0, 1)
        ax_bar.set_ylabel("probability")
        ax_bar.set_title(f"the model reads {p}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Strokes → pixels
# --------------------------------------------------------------------------------------------


def rasterize(strokes: Strokes, size: int = 280, brush: float = 20.0) -> np.ndarray:
    """Draw strokes (lists of canvas points) with a round brush: uint8 [size, size], ink = 255."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    r = brush / 2
    for stroke in strokes:
        pts = [(float(x), float(y)) for x, y in stroke]
        pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
        if not pts:
            continue
        if len(pts) > 1:
            draw.line(pts, fill=255, width=max(1, round(brush)), joint="curve")
        for x, y in pts:  # round caps and joints
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img)


def example_strokes(name: str, size: int = 280) -> list[list[tuple[float, float]]]:
    """Hand-made canvas strokes for demos and tests.

    Names: "1", "7", "7-bar" (a 7 crossed on its stem), "small-1-corner", "small-7-corner", "dot".
    """
    s = size / 280
    shapes = {
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
    if name not in shapes:
        raise KeyError(f"unknown example {name!r}; choose from {sorted(shapes)}")
    return [[(x * s, y * s) for x, y in stroke] for stroke in shapes[name]]


# --------------------------------------------------------------------------------------------
# The drawing pad widget
# --------------------------------------------------------------------------------------------

EMPTY_MESSAGE = "Draw a digit in the white square (mouse or finger)."


def _png(image28: np.ndarray, scale: int = 4) -> bytes:
    """A crisp, enlarged PNG of a 28×28 ink image (ink drawn white on black, like MNIST)."""
    img = Image.fromarray(np.uint8(np.clip(image28, 0, 1) * 255), mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _bars_html(probabilities: np.ndarray | None, width: int = 140) -> str:
    """Ten horizontal bars as HTML (cheap to update on every stroke)."""
    rows = []
    best = int(np.argmax(probabilities)) if probabilities is not None else -1
    for d in range(10):
        p = float(probabilities[d]) if probabilities is not None else 0.0
        colour = "#d62728" if d == best else "#1f77b4"
        rows.append(
            f'<div class="mnist-pad-bar" data-digit="{d}" style="display:flex;'
            f'align-items:center;height:17px;font-family:monospace">'
            f'<span style="width:1.3em">{d}</span>'
            f'<span style="display:inline-block;height:12px;width:{p * width:.1f}px;'
            f'background:{colour}"></span>'
            f'<span style="margin-left:4px;font-size:11px">{p:.0%}</span></div>'
        )
    return '<div class="mnist-pad-bars">' + "".join(rows) + "</div>"


class DigitPad(widgets.VBox):
    """A drawing pad that shows a live MNIST prediction: ``pad = DigitPad(model)``.

    ``model`` is an ``nn.Module``, a Checkpoint, a checkpoint path or None (newest best
    checkpoint, else a quick model trained now). Draw with the mouse or a finger, or
    programmatically with :meth:`draw_strokes`. The last answer is in ``pad.prediction``.
    """

    def __init__(
        self,
        model: Any = None,
        *,
        mean: float | None = None,
        std: float | None = None,
        size: int = 280,
        brush: float = 20.0,
        throttle: float = 0.15,
    ) -> None:
        self.loaded = model if isinstance(model, LoadedModel) else resolve_model(model, mean, std)
        self.model = self.loaded.model
        self.size = int(size)
        self.brush = float(brush)
        self.throttle = float(throttle)
        self.strokes: list[list[tuple[float, float]]] = []
        self.prediction: Prediction | None = None
        self.message = EMPTY_MESSAGE
        self._pen_down = False
        self._last_update = 0.0

        self.canvas = Canvas(width=self.size, height=self.size)
        self.canvas.layout.width = f"{self.size}px"
        self.canvas.layout.height = f"{self.size}px"
        self.canvas.add_class("mnist-pad-canvas")
        self.clear_button = widgets.Button(description="Clear", icon="eraser")
        self.clear_button.add_class("mnist-pad-clear")
        self.prediction_html = widgets.HTML()
        self.prediction_html.add_class("mnist-pad-prediction")
        self.bars = widgets.HTML(_bars_html(None))
        self.seen = widgets.Image(format="png", width=112, height=112)
        self.seen.add_class("mnist-pad-seen")
        self.status = widgets.HTML()
        self.status.add_class("mnist-pad-status")
        self.errors = widgets.Output()  # any unexpected callback error lands here

        side = widgets.VBox(
            [
                self.prediction_html,
                self.bars,
                widgets.HTML("<small>what the model sees (28×28):</small>"),
                self.seen,
            ],
            layout=widgets.Layout(margin="0 0 0 16px"),
        )
        # The border goes on a box around the canvas, never on the canvas itself (it would
        # shift the mouse coordinates).
        paper = widgets.Box([self.canvas], layout=widgets.Layout(border="2px solid #888"))
        left = widgets.VBox([paper, self.clear_button])
        super().__init__(
            [widgets.HBox([left, side]), self.status, self.errors],
            layout=widgets.Layout(width="fit-content"),
        )
        self.add_class("mnist-pad")

        self._wire()
        self._paint_background()
        self._show()
        note = "(run the training lesson for a stronger model)" if self.loaded.trained_now else ""
        self.status.value = (
            f"<small>Using {html.escape(self.loaded.description)}. {note}</small>"
        )

    # ---- wiring -----------------------------------------------------------------------
    def _safe(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Wrap a callback: an error becomes a one-line message (traceback in ``errors``)."""

        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self._pen_down = False
                self.prediction = None
                self.message = f"Something went wrong: {type(exc).__name__}: {exc}"
                self._show()
                with self.errors:
                    traceback.print_exc()

        return wrapped

    def _wire(self) -> None:
        c = self.canvas
        c.on_mouse_down(self._safe(self._down))
        c.on_mouse_move(self._safe(self._move))
        c.on_mouse_up(self._safe(self._up))
        c.on_mouse_out(self._safe(self._up))
        c.on_touch_start(self._safe(lambda t: t and self._down(*t[0])))
        c.on_touch_move(self._safe(lambda t: t and self._move(*t[0])))
        c.on_touch_end(self._safe(lambda t: self._up(*t[0]) if t else self._up()))
        c.on_touch_cancel(self._safe(lambda t: self._up()))
        c.on_client_ready(self._safe(self._repaint))
        self.clear_button.on_click(self._safe(lambda _b: self.clear()))

    # ---- pen events -------------------------------------------------------------------
    def _down(self, x: float, y: float) -> None:
        self._pen_down = True
        # The throttle clock starts at pen-down: a live update comes `throttle` seconds into a
        # stroke at the earliest (comparing with a zero start breaks on machines up for long).
        self._last_update = time.perf_counter()
        self.strokes.append([(float(x), float(y))])
        with hold_canvas():
            self.canvas.fill_circle(x, y, self.brush / 2)

    def _extend(self, x: float, y: float) -> None:
        """Add a point to the current stroke and paint the new segment."""
        x0, y0 = self.strokes[-1][-1]
        self.strokes[-1].append((float(x), float(y)))
        with hold_canvas():
            self.canvas.stroke_line(x0, y0, x, y)

    def _move(self, x: float, y: float) -> None:
        if not self._pen_down or not self.strokes:
            return
        self._extend(x, y)
        if time.perf_counter() - self._last_update >= self.throttle:
            self.update()  # live, but at most every `throttle` seconds while drawing

    def _up(self, x: float | None = None, y: float | None = None) -> None:
        if not self._pen_down:
            return
        self._pen_down = False
        if x is not None and y is not None and self.strokes and (float(x), float(y)) != self.strokes[-1][-1]:
            self._extend(x, y)
        self.update()  # always on pen-up

    # ---- drawing on the canvas --------------------------------------------------------
    def _paint_background(self) -> None:
        with hold_canvas():
            self.canvas.clear()
            self.canvas.fill_style = "white"
            self.canvas.fill_rect(0, 0, self.size, self.size)
            self.canvas.fill_style = "black"
            self.canvas.stroke_style = "black"
            self.canvas.line_width = self.brush
            self.canvas.line_cap = "round"
            self.canvas.line_join = "round"

    def _paint_strokes(self, strokes: Strokes) -> None:
        with hold_canvas():
            for stroke in strokes:
                pts = [(float(x), float(y)) for x, y in stroke]
                if pts:
                    self.canvas.fill_circle(pts[0][0], pts[0][1], self.brush / 2)
                if len(pts) > 1:
                    self.canvas.stroke_lines(pts)

    def _repaint(self) -> None:
        self._paint_background()
        self._paint_strokes(self.strokes)

    # ---- public API -------------------------------------------------------------------
    def clear(self) -> None:
        """Wipe the pad and forget the prediction."""
        self.strokes = []
        self._pen_down = False
        self._paint_background()
        self.update()

    def draw_strokes(self, strokes: Strokes) -> Prediction | None:
        """Add strokes (lists of (x, y) canvas points) as if drawn, then predict."""
        new = [[(float(x), float(y)) for x, y in s] for s in strokes if len(s)]
        self._paint_strokes(new)
        self.strokes.extend(new)
        self._pen_down = False
        return self.update()

    def raster(self) -> np.ndarray:
        """The drawing as pixels: uint8 [size, size], ink = 255 on 0."""
        return rasterize(self.strokes, self.size, self.brush)

    def update(self) -> Prediction | None:
        """Predict from the current strokes and refresh the display."""
        self._last_update = time.perf_counter()
        if not any(self.strokes):
            self.prediction, self.message = None, EMPTY_MESSAGE
        else:
            try:
                image28 = prepare_digit(self.raster())
                self.prediction = classify(
                    image28, self.model, self.loaded.mean, self.loaded.std
                )
                self.message = ""
            except DrawingError as exc:
                self.prediction, self.message = None, str(exc)
        self._show()
        return self.prediction

    @property
    def probabilities(self) -> np.ndarray | None:
        """The ten probabilities of the last prediction (None before any drawing)."""
        return None if self.prediction is None else self.prediction.probabilities

    @property
    def image28(self) -> np.ndarray | None:
        """The 28×28 image the model saw last (ink = 1)."""
        return None if self.prediction is None else self.prediction.image28

    def _show(self) -> None:
        p = self.prediction
        if p is None:
            self.prediction_html.value = (
                '<div style="min-height:50px;display:flex;align-items:center;max-width:320px">'
                f'<span class="mnist-pad-message">{html.escape(self.message)}</span></div>'
            )
            self.bars.value = _bars_html(None)
            self.seen.value = _png(np.zeros((FRAME, FRAME), np.float32))
        else:
            self.prediction_html.value = (
                '<div style="line-height:50px;white-space:nowrap">'
                '<span style="font-size:15px">I read: </span>'
                f'<span class="mnist-pad-digit" style="font-size:40px;font-weight:bold">'
                f"{p.digit}</span> "
                f'<span class="mnist-pad-confidence">({p.confidence:.0%} sure)</span></div>'
            )
            self.bars.value = _bars_html(p.probabilities)
            self.seen.value = _png(p.image28)
