"""Lesson 08's measures of the gap between MNIST and your handwriting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlib.handwriting.domain_gap import (
    accuracy_interval,
    measure,
    plot_gap_examples,
    plot_gap_measures,
    plot_misreads,
)


def bar(width: int, lean: float = 0.0, shift: int = 0) -> np.ndarray:
    """A 20-px tall bar ``width`` px wide whose top is moved ``lean`` px per px of height to the right."""
    img = np.zeros((28, 28), np.float32)
    for row in range(4, 24):
        left = round(13 + shift + lean * (14 - row))
        img[row, left : left + width] = 1.0
    return img


def test_accuracy_interval() -> None:
    low, high = accuracy_interval(45, 50)
    assert (round(low, 3), round(high, 3)) == (0.786, 0.957)  # Wilson, 95 %
    assert accuracy_interval(50, 50)[1] == 1.0 and accuracy_interval(0, 50)[0] == 0.0
    assert accuracy_interval(0, 0) == (0.0, 1.0)
    assert accuracy_interval(900, 1000)[1] - accuracy_interval(900, 1000)[0] < high - low  # more digits: surer


def test_measures_see_width_slant_and_centring() -> None:
    m = measure(np.stack([bar(2), bar(4), bar(2, lean=0.3), bar(2, shift=5)]))
    width, slant, off = m["stroke width (px)"], m["slant"], m["off-centre (px)"]
    assert width[0] == pytest.approx(2, abs=0.3) and width[1] == pytest.approx(4, abs=0.5)
    assert abs(slant[0]) < 0.02 and slant[2] == pytest.approx(0.3, abs=0.05)
    assert off[0] < 1 and off[3] == pytest.approx(np.hypot(0.5, 4.5), abs=1e-6)  # centre (13.5, 18.5)


def test_figures(tmp_path) -> None:
    imgs = torch.from_numpy(np.stack([bar(2), bar(3, lean=0.2)] * 3))
    labels = torch.tensor([1, 7] * 3)
    assert plot_gap_measures(imgs, imgs * 0.9) is not None
    assert plot_gap_examples(imgs, labels, imgs, labels, digits=(1, 7), per=3) is not None
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.uint8(255 - imgs[i].numpy() * 255)).save(paths[-1])
    probs = torch.eye(10)[[1, 7, 7, 7, 1, 1]].float()  # items 2 and 5 are misread
    fig = plot_misreads(paths, imgs, labels.tolist(), probs, k=4)
    assert fig is not None and len(fig.axes) == 4
    assert "1 → 7" in fig.axes[0].get_title() or "7 → 1" in fig.axes[0].get_title()
    assert plot_misreads(paths, imgs, labels.tolist(), torch.eye(10)[labels]) is None
