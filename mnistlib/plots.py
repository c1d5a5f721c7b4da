"""Figures shared by several lessons: image grids, galleries and simple charts.

Every function returns its matplotlib ``Figure`` (so tests can inspect it); notebooks end the
cell with ``plt.show()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure


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
    imgs = [torch.as_tensor(im).detach().cpu().float().squeeze() for im in images]
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
