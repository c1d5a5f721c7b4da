"""Figures shared by several lessons: image grids, galleries and simple charts.

Every function returns its matplotlib ``Figure`` (so tests can inspect it); notebooks end the
cell with ``plt.show()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ._support import files


def image_grid(
    images: torch.Tensor | Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 10,
    cmap: str = "gray_r",
    size: float = 1.2,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Show a batch of 28×28 images (``[N, 28, 28]`` or ``[N, 1, 28, 28]``) in a grid."""
    imgs = [torch.as_tensor(im).detach().cpu().float().squeeze().numpy() for im in images]
    n = len(imgs)
    if n == 0:
        raise ValueError("no images to show")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(imgs[i], cmap=cmap)
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def class_balance(
    counts: Mapping[str, Sequence[int] | torch.Tensor],
    percent: bool = True,
    title: str | None = "How many images of each digit?",
    size: tuple[float, float] = (8.0, 3.2),
) -> Figure:
    """Grouped bar chart of images per class, one bar group per digit and one colour per set.

    ``counts`` maps a set's name (``"train"``, ``"test"``…) to its 10 class counts. With
    ``percent`` the bars show each class's share of its own set, so sets of different sizes
    compare directly; a dashed line marks the perfectly balanced 10 %.
    """
    if not counts:
        raise ValueError("no counts to show")
    fig, ax = plt.subplots(figsize=size)
    width = 0.8 / len(counts)
    for k, (name, values) in enumerate(counts.items()):
        v = torch.as_tensor(values, dtype=torch.float64)
        heights = (100 * v / v.sum()) if percent else v
        xs = torch.arange(len(v), dtype=torch.float64) + (k - (len(counts) - 1) / 2) * width
        ax.bar(xs.tolist(), heights.tolist(), width=width, label=f"{name} ({int(v.sum()):,})")
    if percent:
        ax.axhline(10, color="gray", linestyle="--", linewidth=1)
    n_classes = len(torch.as_tensor(next(iter(counts.values()))))
    ax.set_xticks(range(n_classes))
    ax.set_xlabel("digit")
    ax.set_ylabel("share of the set (%)" if percent else "images")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax.legend(loc="upper right", ncol=len(counts))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def pixel_histogram(
    images: torch.Tensor,
    mean: float | None = None,
    std: float | None = None,
    log: bool = True,
    title: str | None = "Pixel values over the whole training set",
    size: tuple[float, float] = (8.0, 3.2),
) -> Figure:
    """Histogram of the 256 grey levels of uint8 images (or floats in 0–1), on a log scale.

    Pixel values are shown scaled to 0–1; ``mean`` and ``std`` (in the same 0–1 units), when
    given, are drawn as a solid line and a shaded mean ± std band.
    """
    x = torch.as_tensor(images).detach().cpu()
    levels = x.flatten() if x.dtype == torch.uint8 else (x.flatten().clamp(0, 1) * 255).round().to(torch.uint8)
    counts = torch.bincount(levels, minlength=256)
    fig, ax = plt.subplots(figsize=size)
    ax.bar((torch.arange(256) / 255).tolist(), counts.tolist(), width=1 / 255, color="tab:blue")
    if log:
        ax.set_yscale("log")
    if mean is not None:
        ax.axvline(mean, color="tab:red", label=f"mean {mean:.4f}")
        if std is not None:
            ax.axvspan(max(0.0, mean - std), mean + std, color="tab:red", alpha=0.12, label=f"± std {std:.4f}")
        ax.legend(loc="upper center")
    ax.set_xlabel("pixel value (0 = background, 1 = ink)")
    ax.set_ylabel("pixels" + (" (log scale)" if log else ""))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def augmentation_gallery(
    originals: torch.Tensor,
    augmented: Mapping[str, torch.Tensor],
    cmap: str = "gray_r",
    size: float = 1.1,
    title: str | None = None,
) -> Figure:
    """Before/after grid: the originals in the first row, then one labelled row per pipeline.

    ``originals`` is ``[N, 28, 28]`` or ``[N, 1, 28, 28]`` (uint8 or float); each value of
    ``augmented`` holds the same N images after one augmentation, in the same order.
    """
    rows = {"original": originals, **augmented}
    n = len(originals)
    if n == 0:
        raise ValueError("no images to show")
    for name, batch in rows.items():
        if len(batch) != n:
            raise ValueError(f"{name!r} has {len(batch)} images, expected {n}")
    label_width = 1.3
    fig, axes = plt.subplots(
        len(rows), n, figsize=(label_width + n * size, len(rows) * size), squeeze=False
    )
    for r, (name, batch) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(torch.as_tensor(batch[c]).detach().cpu().float().squeeze().numpy(), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_history(axes: Sequence, history: object, target: float | None = None) -> None:
    """Draw loss and accuracy per epoch (train against validation, the best epoch starred) on two axes.

    ``history`` is a :class:`mnistlib.training.History` or a checkpoint's history dict.
    """
    from .training import History

    h = history if isinstance(history, History) else History.from_dict(history)  # type: ignore[arg-type]
    ax_loss, ax_acc = axes
    for ax in axes:
        ax.clear()
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.plot(h.epoch, h.train_loss, "o-", label="train")
    ax_loss.plot(h.epoch, h.val_loss, "s-", label="validation")
    ax_loss.set(ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(h.epoch, [100 * a for a in h.train_acc], "o-", label="train")
    ax_acc.plot(h.epoch, [100 * a for a in h.val_acc], "s-", label="validation")
    ax_acc.set(ylabel="accuracy (%)", title="Accuracy")
    if target is not None:
        ax_acc.axhline(100 * target, color="gray", ls="--", lw=1, label=f"target {target:.1%}")
    if h.best_epoch is not None:
        ax_acc.plot([h.best_epoch], [100 * h.val_acc[h.epoch.index(h.best_epoch)]], "*", ms=14, color="gold",
                    mec="black", label="best validation accuracy")
    for ax in axes:
        if h.epoch:
            ax.set_xticks(h.epoch if len(h.epoch) <= 20 else ax.get_xticks())
            ax.legend(fontsize=8)


def plot_history(history: object, target_accuracy: float | None = None) -> Figure:
    """Loss and accuracy per epoch, train against validation, the best epoch starred."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    draw_history(axes, history, target_accuracy)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` as an image (creating folders), atomically: never half an image (and the temporary a killed
    save left is removed); returns the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    files.clean_stale(path.parent, targets=lambda name: name == files.temp_target(path.name))  # a killed save's
    return files.atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
