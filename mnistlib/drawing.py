"""Lesson 05: prepare any image the way MNIST digits were prepared, and read the digit in it.

MNIST digits were made by scaling each digit's bounding box to fit 20×20 pixels (keeping the
aspect ratio, with anti-aliasing) and pasting it into a 28×28 frame so that its centre of mass
sits at the centre. A model trained on MNIST reads a new digit well only when the digit is
prepared the same way, so every input — the drawing pad, ``predict_image`` and the CLI's
``predict`` — goes through one function, :func:`prepare_digit`:

grayscale → invert when the ink is darker than the background → crop to the ink's bounding box →
scale the longer side to 20 px → centre of mass to the centre of 28×28 → normalise.

Bad input never ends in a traceback: it raises :class:`DrawingError`, whose message is one line.
The pad itself (strokes, canvas, prediction view) lives in :mod:`mnistlib.strokes` and
:mod:`mnistlib.widgets.pad`; loading a model is the caller's job (a ``Checkpoint`` carries the model and
the normalisation it was trained with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ._support.images import DrawingError, load_image, to_gray
from .devices import eval_mode, model_device

__all__ = [
    "NOT_SURE_BELOW",
    "DrawingError",
    "Prediction",
    "STEP_TITLES",
    "centre_in_frame",
    "centre_of_mass",
    "classify",
    "load_image",
    "model_and_normalisation",
    "naive_28",
    "plot_probabilities",
    "plot_steps",
    "predict_image",
    "prepare_digit",
    "preprocess",
    "to_gray",
]

#: The MNIST training set's pixel mean and standard deviation (fallback when neither a
#: checkpoint nor ``mnistlib.data`` can provide them).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FRAME = 28  #: MNIST images are 28×28 …
BOX = 20  #: … with the digit's longer side scaled to 20 px.
MIN_CONTRAST = 0.08  #: ink must differ from the background by this much (of full scale)
NOISE = 0.1  #: after stretching, ink fainter than this counts as background
#: Below this top probability a prediction says "not sure" instead of presenting a guess as an answer.
NOT_SURE_BELOW = 0.6


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
        from .data import normalization_constants

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
    """A model's answer for one image: the digit, all ten probabilities, the 28×28 it saw.

    ``sure`` is False when the top probability is below ``threshold``: the answer is then a guess,
    and says so ("not sure — maybe a 7").
    """

    digit: int
    probabilities: np.ndarray
    image28: np.ndarray
    threshold: float = NOT_SURE_BELOW

    @property
    def confidence(self) -> float:
        """Probability of the predicted digit."""
        return float(self.probabilities[self.digit])

    @property
    def sure(self) -> bool:
        """True when the top probability reaches ``threshold``."""
        return self.confidence >= self.threshold

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most likely digits with their probabilities, most likely first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]

    def __str__(self) -> str:
        if self.sure:
            return f"{self.digit} ({self.confidence:.0%} sure)"
        return f"not sure (maybe {self.digit}, {self.confidence:.0%})"


def _check_threshold(threshold: float) -> float:
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a probability in [0, 1], e.g. {NOT_SURE_BELOW}; got {threshold}")
    return float(threshold)


def model_and_normalisation(
    source: Any, mean: float | None = None, std: float | None = None
) -> tuple[nn.Module, float, float]:
    """(model, mean, std) from a Checkpoint (its own normalisation unless overridden) or a bare
    ``nn.Module`` with ``mean``/``std`` given. Loading a file is the caller's job."""
    model = getattr(source, "model", source)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a Checkpoint or an nn.Module, got {type(source).__name__}"
            " (load a file first: mnistlib.checkpoints.load_checkpoint(path))"
        )
    mean = getattr(source, "mean", None) if mean is None else mean
    std = getattr(source, "std", None) if std is None else std
    if mean is None or std is None:
        raise TypeError("a bare model needs mean= and std=: the normalisation it was trained with")
    return model, float(mean), float(std)


def classify(
    image28: np.ndarray, model: nn.Module, mean: float, std: float, threshold: float = NOT_SURE_BELOW
) -> Prediction:
    """Run a prepared 28×28 image (ink = 1, from ``prepare_digit``/``naive_28``) through a model."""
    threshold = _check_threshold(threshold)
    x = (torch.as_tensor(image28, dtype=torch.float32) - mean) / std
    x = x.reshape(1, 1, FRAME, FRAME).to(model_device(model))
    with eval_mode(model), torch.inference_mode():
        logits = model(x).float().reshape(-1)
        probs = torch.softmax(logits, dim=0).cpu().numpy().astype(np.float64)
    if probs.shape != (10,) or not np.all(np.isfinite(probs)):
        raise DrawingError(f"The model gave {probs.shape[0]} non-finite or non-10 scores.")
    return Prediction(int(np.argmax(probs)), probs, np.asarray(image28, dtype=np.float32), threshold)


def predict_image(
    image: Any,
    model: Any,
    *,
    mean: float | None = None,
    std: float | None = None,
    threshold: float = NOT_SURE_BELOW,
) -> Prediction:
    """Predict the digit in an image file, Pillow image or array (one recipe for every input).

    ``model`` is a Checkpoint (``load_checkpoint``, ``load_or_train``) or an ``nn.Module`` with
    ``mean``/``std``. Below ``threshold`` the prediction says it is not sure.
    Raises :class:`DrawingError` with a one-line message for input holding no readable digit.
    """
    net, mean, std = model_and_normalisation(model, mean, std)
    return classify(prepare_digit(image), net, mean, std, threshold)


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


def plot_probabilities(predictions: dict[str, Prediction]) -> Any:
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
        ax_bar.set_title(f"the model reads {p}" if p.sure else f"the model is {p}", fontsize=10)
    fig.tight_layout()
    return fig
