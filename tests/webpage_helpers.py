"""Shared by the web page's tests: a trained model, its ONNX export, and the stroke rasters.

``export_onnx`` calls PyTorch's exporter directly (one file, dynamic batch); ``mnistlib.export``
can take its place once it exists. ``trained_checkpoint`` is the quick model the other browser
tests use: the newest best checkpoint, else one trained now (seconds with ``MNISTLIB_QUICK=1``),
made once per test session.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlib.strokes import example_strokes, rasterize

EXAMPLES = ("1", "7", "7-bar", "small-1-corner", "small-7-corner", "dot")


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """One-file ONNX export of an MNIST model, batch dimension dynamic."""
    model = model.cpu().eval()
    arg = next(iter(inspect.signature(model.forward).parameters))
    trace_log = logging.getLogger("torch.__trace")  # thousands of DEBUG lines in a failure report
    level = trace_log.level
    trace_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=True, external_data=False,
                dynamic_shapes={arg: {0: "batch"}}, verbose=False,
            )  # fmt: skip
    finally:
        trace_log.setLevel(level)
    return path


@functools.lru_cache(maxsize=1)
def _checkpoint():
    from browser import screenshot_model
    from conftest import find_data_root  # tests/conftest.py

    from mnistlib.checkpoints import latest_checkpoint
    from mnistlib.recipes import load_or_train

    if screenshot_model() is not None:  # kept screenshots show lesson 03's model
        return load_or_train(screenshot_model(), verbose=False)
    if latest_checkpoint() is None and find_data_root() is None:
        return None
    return load_or_train(verbose=False)


def trained_checkpoint():
    """A trained Checkpoint (skips the test when there is neither a checkpoint nor MNIST)."""
    ckpt = _checkpoint()
    if ckpt is None:
        pytest.skip("neither a checkpoint nor the MNIST files to train a quick model")
    return ckpt


def _antialiased(strokes, size: int, brush: float) -> np.ndarray:
    """Strokes drawn 4× larger and box-reduced: grey edges like a browser canvas's."""
    big = rasterize([[(x * 4, y * 4) for x, y in s] for s in strokes], size * 4, brush * 4)
    return np.asarray(Image.fromarray(big).resize((size, size), Image.Resampling.BOX))


def _random_strokes(rng: np.random.Generator, size: int) -> list[list[tuple[float, float]]]:
    """One to three strokes inside a random box of the canvas (varied size and position)."""
    side = rng.uniform(0.15, 1.0) * size
    x0, y0 = rng.uniform(0, size - side, 2)
    return [
        [(float(x0 + rng.uniform(0, side)), float(y0 + rng.uniform(0, side))) for _ in range(rng.integers(1, 6))]
        for _ in range(rng.integers(1, 4))
    ]


def random_raster(rng: np.random.Generator, kind: int) -> np.ndarray:
    """A seeded random drawing as 8-bit pixels, in one of five looks prepare_digit accepts."""
    size = int(rng.integers(60, 400))
    strokes, brush = _random_strokes(rng, size), float(rng.uniform(3, 40))
    if kind == 0:  # the pad's raster: white ink on black
        return rasterize(strokes, size, brush)
    if kind == 1:  # dark ink on light paper
        return 255 - rasterize(strokes, size, brush)
    if kind == 2:  # a browser canvas: black, anti-aliased ink on opaque white RGBA
        gray = 255 - _antialiased(strokes, size, brush)
        return np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    if kind == 3:  # a photo-like scan: grey paper, noise, either ink darker or lighter
        ink = _antialiased(strokes, size, brush) / 255.0
        paper, pen = rng.uniform(0, 255, 2)
        noisy = paper + (pen - paper) * ink + rng.normal(0, 4, ink.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    pad = [(int(rng.integers(0, size)), int(rng.integers(0, size))) for _ in range(2)]
    return np.pad(rasterize(strokes, size, brush), pad)  # a non-square canvas, ink off-centre

def parity_rasters(n_random: int = 15, seed: int = 23) -> dict[str, np.ndarray]:
    """The repository's example strokes plus seeded random drawings, named."""
    rasters = {f"example {name}": rasterize(example_strokes(name)) for name in EXAMPLES}
    block, pixel = np.zeros((40, 40), np.uint8), np.full((9, 13), 200, np.uint8)
    block[10:18, 10:15] = 255  # 5×8 px: the width scales to 12.5 px, which Python rounds to 12
    pixel[4, 6] = 90  # one faint dark pixel on light grey
    rasters.update({"edge: 5×8 block": block, "edge: one pixel": pixel})
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        rasters[f"random {i} (look {i % 5})"] = random_raster(rng, i % 5)
    return rasters
