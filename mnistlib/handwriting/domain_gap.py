"""Lesson 08: how your handwriting differs from MNIST's, measured and shown.

A model that scores 99 % on MNIST's test set can misread a real person's digits far more often:
the test set comes from the same writers and scanners as the training set, your digits do not.
This module puts numbers and pictures on that *domain gap*: an honest accuracy (with its
uncertainty), per-image measures of stroke width, slant and centring, and galleries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["MEASURES", "accuracy_interval", "measure", "plot_gap_examples", "plot_gap_measures", "plot_misreads"]


def accuracy_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for an accuracy of ``correct`` out of ``total`` (95 % for z = 1.96):
    with 50 digits, 45 right is "somewhere between 79 % and 96 %", not "90 %"."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


#: What :func:`measure` reports, with a one-line meaning each.
MEASURES = {
    "stroke width (px)": "how thick the pen was, after scaling to 28×28 (the ink as one long rectangle)",
    "slant": "sideways shift of the ink per pixel of height (> 0: the top leans right)",
    "off-centre (px)": "distance of the centre of mass from the frame's centre (14, 14)",
}


def measure(images: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Per-image measures (see :data:`MEASURES`) of 28×28 digits with ink in 0–1 (ink = 1)."""
    a = np.asarray(torch.as_tensor(images, dtype=torch.float32).reshape(-1, 28, 28))
    mask = a > 0.5
    area = mask.sum(axis=(1, 2))
    outline = (mask[:, :, 1:] != mask[:, :, :-1]).sum(axis=(1, 2)) + (mask[:, 1:] != mask[:, :-1]).sum(axis=(1, 2))
    ys, xs = np.mgrid[0:28, 0:28].astype(np.float64)
    total = a.sum(axis=(1, 2)).clip(min=1e-6)
    cy, cx = (a * ys).sum(axis=(1, 2)) / total, (a * xs).sum(axis=(1, 2)) / total
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    slant = -(a * dx * dy).sum(axis=(1, 2)) / (a * dy * dy).sum(axis=(1, 2)).clip(min=1e-6)
    # a w × L rectangle has area wL and outline 2(w + L): w is the smaller root of t² − (outline/2)t + area
    quarter = outline / 4
    width = quarter - np.sqrt(np.maximum(quarter**2 - area, 0))
    return {
        "stroke width (px)": width,
        "slant": slant,
        "off-centre (px)": np.hypot(cy - 14, cx - 14),
    }


def plot_gap_measures(mnist: torch.Tensor | np.ndarray, yours: torch.Tensor | np.ndarray) -> Figure:
    """Histograms of each measure for MNIST digits and yours (both 28×28, ink in 0–1), side by side."""
    m, y = measure(mnist), measure(yours)
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 3))
    for ax, name in zip(axes, MEASURES, strict=True):
        both = np.concatenate([m[name], y[name]])
        bins = np.linspace(np.percentile(both, 0.5), np.percentile(both, 99.5), 30)
        ax.hist(m[name], bins=bins, density=True, alpha=0.55, label=f"MNIST ({len(m[name]):,})")
        ax.hist(y[name], bins=bins, density=True, alpha=0.55, label=f"yours ({len(y[name]):,})")
        ax.axvline(np.median(m[name]), color="tab:blue", lw=1)
        ax.axvline(np.median(y[name]), color="tab:orange", lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_yticks([])
    axes[0].legend(fontsize=8)
    fig.suptitle("How the digits differ after the same preparation (lines: medians)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_gap_examples(mnist: torch.Tensor, mnist_labels: torch.Tensor, yours: torch.Tensor,
                      your_labels: torch.Tensor, digits: Sequence[int] = (1, 4, 7, 9), per: int = 6) -> Figure:
    """For each digit, ``per`` MNIST examples (left) beside ``per`` of yours (right), as the model sees them."""
    fig, axes = plt.subplots(len(digits), 2 * per, figsize=(2 * per * 0.9, len(digits) * 1.0), squeeze=False)
    for row, digit in enumerate(digits):
        for side, (images, labels) in enumerate([(mnist, mnist_labels), (yours, your_labels)]):
            picks = torch.nonzero(torch.as_tensor(labels) == digit).flatten()[:per].tolist()
            for k in range(per):
                ax = axes[row, side * per + k]
                ax.axis("off")
                if k < len(picks):
                    ax.imshow(torch.as_tensor(images[picks[k]]).float().squeeze().numpy(), cmap="gray_r")
    axes[0, 0].set_title("MNIST", loc="left", fontsize=10)
    axes[0, per].set_title("yours", loc="left", fontsize=10)
    fig.tight_layout()
    return fig


def plot_misreads(paths: Sequence, images: torch.Tensor | np.ndarray, labels: Sequence[int],
                  probs: torch.Tensor, k: int = 8) -> Figure | None:
    """The ``k`` most confident misreads: each as drawn or photographed (left) and the 28×28 the model
    saw (right), titled "true → read (probability)". None when there is no misread."""
    probs = torch.as_tensor(probs)
    labels = torch.as_tensor(list(labels))
    wrong = torch.nonzero(probs.argmax(1) != labels).flatten()
    if not len(wrong):
        return None
    order = wrong[torch.argsort(probs[wrong].max(1).values, descending=True)][:k].tolist()
    fig, axes = plt.subplots(2, len(order), figsize=(1.6 * len(order), 3.5), squeeze=False)
    for col, i in enumerate(order):
        read = int(probs[i].argmax())
        with Image.open(paths[i]) as img:
            axes[0, col].imshow(np.asarray(img.convert("L")), cmap="gray")
        axes[1, col].imshow(np.asarray(images[i]).squeeze(), cmap="gray", vmin=0, vmax=1)
        title = f"{int(labels[i])} → {read} ({float(probs[i, read]):.0%})"
        axes[0, col].set_title(title, fontsize=9, color="firebrick")
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("as drawn", fontsize=9)
    axes[1, 0].set_ylabel("28×28 seen", fontsize=9)
    fig.tight_layout()
    return fig
