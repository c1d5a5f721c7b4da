"""Look inside a trained network: kernels, feature maps, saliency and the learned feature space.

Everything works on any ``nn.Module`` that maps ``[N, 1, H, W]`` normalised images to logits —
every registry model and every model from ``load_checkpoint`` — without touching the model
class: activations are read with forward hooks that are always removed again.

Layers are named by their dotted path from ``model.named_modules()`` (``"features.0"``,
``"classifier.1"``); :func:`layer_names` lists them and an unknown name raises
:class:`LayerNotFoundError`, whose message lists the valid ones.

:class:`ActivationStats` is a callback for :func:`mnistlib.training.fit` that watches the same
activations *during* training: their mean, standard deviation and share of zeros, batch by batch.

Images passed to the saliency functions are *normalised* (as the model sees them). The
*background* of an MNIST image is the normalised value of a 0 pixel, ``-mean / std``
(:func:`background_value`); occlusion paints that value and gradient × input measures the
input relative to it, so a blank image gets a zero map from both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .architecture import forward_hooks, trace_layers
from .devices import eval_mode, model_device

__all__ = [
    "as_batch",
    "single_image",
    "LayerNotFoundError",
    "layer_names",
    "conv_layers",
    "get_layer",
    "capture",
    "receptive_field",
    "penultimate_layer",
    "embed",
    "pca_2d",
    "FeatureSpace",
    "feature_space",
    "background_value",
    "occlusion_map",
    "gradient_x_input",
    "rank_correlation",
    "plot_kernels",
    "plot_feature_maps",
    "plot_saliency",
    "plot_feature_space",
    "ActivationStats",
    "plot_activation_stats",
]

Image = torch.Tensor


class LayerNotFoundError(KeyError, ValueError):
    """A layer name that is not in ``model.named_modules()``; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# Layers and hooks


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every sub-module, in registration order (the root module excluded)."""
    return [name for name, _ in model.named_modules() if name]


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of the ``nn.Conv2d`` layers, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def activation_after(model: nn.Module, layer: str) -> str:
    """The first ReLU registered after ``layer`` (what the next layer reads), or ``layer`` if none follows."""
    names = layer_names(model)
    later = names[names.index(layer) + 1:] if layer in names else []
    return next((n for n in later if isinstance(get_layer(model, n), nn.ReLU)), layer)


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; :class:`LayerNotFoundError` lists the names if missing."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        valid = ", ".join(layer_names(model)) or "(none)"
        kind = type(model).__name__
        raise LayerNotFoundError(f"{kind} has no layer {name!r}; its layers are: {valid}")
    return modules[name]


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """``[H, W]``, ``[C, H, W]`` or ``[N, C, H, W]`` → a float ``[N, C, H, W]`` batch."""
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"expected [H, W], [C, H, W] or [N, C, H, W], got {tuple(x.shape)}")
    return x.float()


def capture(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``x`` through the model in eval mode and return each named layer's output (on CPU).

    The outputs are cloned, so a later in-place ReLU cannot change them. Hooks are removed in a
    ``finally`` block, so the model is left exactly as it was, even when the forward pass fails.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    modules = {name: get_layer(model, name) for name in names}  # validate before running
    store: dict[str, torch.Tensor] = {}

    def record(name: str, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        store[name] = output.detach().clone().cpu()

    with forward_hooks(modules, record), eval_mode(model), torch.no_grad():
        model(as_batch(x).to(model_device(model)))
    missing = [n for n in names if n not in store]
    if missing:
        raise RuntimeError(f"layers {missing} exist but were not used in the forward pass")
    return {name: store[name] for name in names}


def receptive_field(model: nn.Module, layer: str, size: int = 28) -> int | None:
    """Side, in input pixels, of the square one unit of ``layer`` can see (None once flattened).

    Lesson 02's rule, from :func:`mnistlib.architecture.trace_layers`: each conv or pool run up
    to ``layer`` widens the field by ``(kernel − 1) × jump`` and multiplies the jump between
    neighbouring units by its stride. Padding does not change it.
    """
    get_layer(model, layer)
    rows = [r for r in trace_layers(model, (1, size, size)) if _inside(r.name, layer)]
    if not rows:
        raise RuntimeError(f"layer {layer!r} exists but was not used in the forward pass")
    return rows[-1].receptive_field


def _inside(name: str, layer: str) -> bool:
    """Whether module ``name`` is ``layer`` or one of its sub-modules."""
    return name == layer or name.startswith(layer + ".")


def penultimate_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` (its *input* is the penultimate activation)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise LayerNotFoundError(
            f"{type(model).__name__} has no nn.Linear layer; its layers are: "
            + (", ".join(layer_names(model)) or "(none)")
        )
    return linears[-1]


def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate activations ``[N, D]`` and logits ``[N, 10]`` for a batch of normalised images.

    The activation is the input of the last ``nn.Linear``, read with a forward *pre*-hook.
    """
    last = get_layer(model, penultimate_layer(model))
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []

    def pre_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        feats.append(inputs[0].detach().flatten(1).cpu())

    handle = last.register_forward_pre_hook(pre_hook)
    try:
        device = model_device(model)
        x = as_batch(images)
        with eval_mode(model), torch.no_grad():
            for i in range(0, len(x), batch_size):
                logits.append(model(x[i : i + batch_size].to(device)).cpu())
    finally:
        handle.remove()
    return torch.cat(feats), torch.cat(logits)


def pca_2d(features: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``[N, D]`` rows onto their first ``k`` principal components.

    Returns ``(points [N, k], explained)`` where ``explained[i]`` is the share of the variance
    along component ``i``. Signs are fixed (largest loading positive) so results are repeatable.
    """
    x = features.double()
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    comps = vh[:k]
    idx = comps.abs().argmax(dim=1)
    signs = torch.sign(comps[torch.arange(len(comps)), idx])
    signs[signs == 0] = 1
    comps = comps * signs[:, None]
    var = s**2
    total = var.sum()
    explained = var[:k] / total if total > 0 else torch.zeros(k, dtype=var.dtype)
    return (x @ comps.T).float(), explained.float()


@dataclass
class FeatureSpace:
    """Test images in the learned feature space, projected to 2-D by PCA."""

    points: torch.Tensor  #: [N, 2]
    labels: torch.Tensor  #: [N] true classes
    preds: torch.Tensor  #: [N] predicted classes
    explained: torch.Tensor  #: [2] share of the variance along each axis
    layer: str  #: the last Linear, whose input was projected
    dim: int  #: width of the penultimate layer

    @property
    def wrong(self) -> torch.Tensor:
        """Boolean mask of the misclassified images."""
        return self.preds != self.labels


def feature_space(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> FeatureSpace:
    """Penultimate activations of ``images`` projected to 2-D, with labels and predictions."""
    feats, logits = embed(model, images, batch_size)
    points, explained = pca_2d(feats, 2)
    return FeatureSpace(
        points=points,
        labels=labels.cpu(),
        preds=logits.argmax(dim=1),
        explained=explained,
        layer=penultimate_layer(model),
        dim=feats.shape[1],
    )


# --------------------------------------------------------------------------------------------
# Saliency


def background_value(mean: float, std: float) -> float:
    """The normalised value of a blank (0) pixel: ``-mean / std``."""
    return (0.0 - mean) / std


def single_image(x: torch.Tensor) -> torch.Tensor:
    """One image as a ``[1, C, H, W]`` batch; a batch of more than one image is an error."""
    batch = as_batch(x)
    if len(batch) != 1:
        raise ValueError(f"expected one image, got a batch of {len(batch)}")
    return batch


def _target(model: nn.Module, x: torch.Tensor, target: int | None) -> int:
    """``target`` if given, else the model's predicted class for ``x``."""
    if target is not None:
        return int(target)
    with eval_mode(model), torch.no_grad():
        return int(model(x.to(model_device(model))).argmax(dim=1)[0])


def occlusion_map(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    *,
    background: float | None = None,
    patch: int = 6,
    stride: int = 2,
    batch_size: int = 256,
) -> torch.Tensor:
    """Occlusion sensitivity: how much the ``target`` probability drops when a blank patch hides
    each pixel. Returns an ``[H, W]`` map (averaged over all patch positions covering a pixel).

    ``x`` is one normalised image; ``target`` defaults to the predicted class; the patch is
    filled with ``background`` (default: ``x.min()``, the blank-pixel value of an MNIST image).
    Positive = hiding this region lowers the probability (the model relies on it).
    """
    img = single_image(x)
    fill = float(img.min()) if background is None else float(background)
    h, w = img.shape[-2:]
    patch = min(patch, h, w)
    tgt = _target(model, img, target)
    ys = list(range(0, h - patch + 1, stride))
    xs = list(range(0, w - patch + 1, stride))
    if ys[-1] != h - patch:
        ys.append(h - patch)
    if xs[-1] != w - patch:
        xs.append(w - patch)
    positions = [(r, c) for r in ys for c in xs]
    batch = img.repeat(len(positions) + 1, 1, 1, 1)  # row 0 stays unoccluded
    for i, (r, c) in enumerate(positions, start=1):
        batch[i, :, r : r + patch, c : c + patch] = fill
    device = model_device(model)
    probs = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(batch), batch_size):
            out = model(batch[i : i + batch_size].to(device))
            probs.append(out.softmax(dim=1)[:, tgt].double().cpu())
    p = torch.cat(probs)
    drop = p[0] - p[1:]
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for d, (r, c) in zip(drop, positions, strict=True):
        total[r : r + patch, c : c + patch] += d
        count[r : r + patch, c : c + patch] += 1
    return (total / count.clamp(min=1)).float()


def gradient_x_input(
    model: nn.Module, x: torch.Tensor, target: int | None = None, *, background: float | None = None
) -> torch.Tensor:
    """Gradient × input: ∂ logit[target] / ∂ pixel × (pixel − background), as an ``[H, W]`` map.

    Measuring the input from the blank background (default ``x.min()``) means only ink can earn
    credit; the sign says whether more ink there would raise (red) or lower (blue) the score.
    """
    img = single_image(x)
    base = float(img.min()) if background is None else float(background)
    tgt = _target(model, img, target)
    img = img.to(model_device(model)).clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        score = model(img)[0, tgt]
        (grad,) = torch.autograd.grad(score, img)
    return (grad * (img.detach() - base)).sum(dim=1)[0].cpu()


def _average_ranks(t: torch.Tensor) -> torch.Tensor:
    """The rank of every value (1 = smallest); tied values share the average of their ranks."""
    _, inverse, counts = torch.unique(t.flatten(), return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    return (last - (counts - 1) / 2)[inverse]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps of the same shape (ties share their average rank):
    1 = the same order of importance, 0 = unrelated, −1 = reversed; NaN when either map is constant.
    The sanity check of Adebayo et al. (2018) compares a trained and a randomised model's maps with it."""
    if a.shape != b.shape:
        raise ValueError(f"the maps differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _average_ranks(a.detach().cpu()), _average_ranks(b.detach().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / norm if norm > 0 else math.nan


# --------------------------------------------------------------------------------------------
# Pictures (each returns the Figure; the notebook shows it with plt.show())


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    """Rows and columns for ``n`` small panels."""
    cols = max(1, min(n, ncols or (8 if n > 12 else 6)))
    return math.ceil(n / cols), cols


def _sym_limit(t: torch.Tensor) -> float:
    """Symmetric colour limit around zero (never 0, so imshow does not complain)."""
    v = float(t.abs().max()) if t.numel() else 0.0
    return v if v > 0 else 1.0


def plot_kernels(model: nn.Module, layer: str | None = None, in_channel: int = 0, ncols: int | None = None):
    """The learned kernels of a conv layer (default: the first) as a grid of images.

    Red = positive weight, blue = negative, white = 0, on one symmetric scale for all kernels,
    so a red stripe next to a blue one is an edge detector. For a layer with several input
    channels the kernels that read ``in_channel`` are shown.
    """
    import matplotlib.pyplot as plt

    convs = conv_layers(model)
    if layer is None:
        if not convs:
            raise LayerNotFoundError(f"{type(model).__name__} has no nn.Conv2d layer")
        layer = convs[0]
    conv = get_layer(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d; try {convs}")
    w = conv.weight.detach().cpu()[:, in_channel]
    lim = _sym_limit(w)
    rows, cols = _grid(len(w), ncols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.8, 1.3 * rows + 0.5), squeeze=False)
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(w):
            im = ax.imshow(w[i].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(str(i), fontsize=8)
    k = tuple(w.shape[-2:])
    fig.suptitle(f"{layer}: {len(w)} kernels of {k[0]}×{k[1]}")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def plot_feature_maps(
    maps: torch.Tensor,
    image: torch.Tensor | None = None,
    title: str | None = None,
    ncols: int | None = None,
):
    """One layer's activations (``[C, H, W]`` or ``[1, C, H, W]``) as a grid, one panel a channel.

    All panels share one colour scale so strong and silent channels can be compared: grey from
    0 for non-negative maps (after a ReLU), red/blue around zero otherwise. ``image`` (the input)
    is drawn first when given.
    """
    import matplotlib.pyplot as plt

    m = maps.detach().cpu().float()
    if m.dim() == 4:
        m = m[0]
    if m.dim() != 3:
        raise ValueError(f"expected feature maps [C, H, W], got {tuple(maps.shape)}")
    extra = 1 if image is not None else 0
    n = len(m) + extra
    rows, cols = _grid(n, ncols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols + 0.8, 1.4 * rows + 0.6), squeeze=False)
    if float(m.min()) >= 0:
        kw = {"cmap": "magma", "vmin": 0.0, "vmax": float(m.max()) or 1.0}
    else:
        lim = _sym_limit(m)
        kw = {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if extra and i == 0:
            ax.imshow(as_batch(image)[0, 0].cpu().numpy(), cmap="gray")
            ax.set_title("input", fontsize=8)
        elif i < n:
            im = ax.imshow(m[i - extra].numpy(), **kw)
            ax.set_title(str(i - extra), fontsize=8)
    c, h, w = m.shape
    fig.suptitle(title or f"{c} feature maps of {h}×{w}")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def plot_saliency(image: torch.Tensor, maps: dict[str, torch.Tensor], title: str | None = None):
    """The digit, then each saliency map over it (red/blue around zero, symmetric limits)."""
    import matplotlib.pyplot as plt

    img = as_batch(image)[0, 0].cpu().numpy()
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3.2 * (len(maps) + 1), 3.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("input")
    for ax, (name, sal) in zip(axes[1:], maps.items(), strict=True):
        s = sal.detach().cpu().float()
        lim = _sym_limit(s)
        ax.imshow(img, cmap="gray", alpha=0.35)
        im = ax.imshow(s.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.75)
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def plot_feature_space(space: FeatureSpace, title: str | None = None):
    """Scatter of the 2-D feature space coloured by true class; misclassified points ringed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    pts = space.points.numpy()
    cmap = plt.get_cmap("tab10")
    for digit in range(10):
        sel = (space.labels == digit).numpy()
        ax.scatter(pts[sel, 0], pts[sel, 1], s=6, color=cmap(digit), alpha=0.6, label=str(digit))
    wrong = space.wrong.numpy()
    ax.scatter(
        pts[wrong, 0],
        pts[wrong, 1],
        s=40,
        facecolors="none",
        edgecolors="black",
        linewidths=1.0,
        label=f"wrong ({int(wrong.sum())})",
    )
    ev = space.explained.tolist()
    ax.set_xlabel(f"PC 1 ({ev[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC 2 ({ev[1]:.0%} of the variance)")
    ax.legend(markerscale=2, fontsize=8, loc="best", ncols=2)
    ax.set_title(title or f"{len(pts)} images: input of {space.layer} ({space.dim} numbers) in 2-D")
    return fig


# --------------------------------------------------------------------------------------------
# Activation statistics during training (a callback for mnistlib.training.fit)


class ActivationStats:
    """A callback for :func:`mnistlib.training.fit`: the mean, standard deviation and share of exact zeros
    of chosen layers' outputs on every ``every``-th training batch (validation passes are not counted).

    ``layers`` defaults to every ``nn.ReLU`` — what each layer passes on. The forward hooks are hung
    on at ``before_fit`` and always removed at ``after_fit``. Read ``steps`` (training batches since the
    start, counted from 1) and ``stats[layer]["mean" | "std" | "zeros"]``, one value per recorded step.
    """

    order = 0
    KINDS = ("mean", "std", "zeros")

    def __init__(self, layers: Sequence[str] | None = None, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be ≥ 1, got {every}")
        self.layers, self.every = (list(layers) if layers is not None else None), every
        self.steps: list[int] = []
        self.stats: dict[str, dict[str, list[float]]] = {}
        self._batch, self._now, self._handles = 0, {}, []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if module.training and (self._batch + 1) % self.every == 0:
                out = output.detach().float()
                self._now[name] = (float(out.mean()), float(out.std()), float((out == 0).float().mean()))

        return hook

    def before_fit(self, state) -> None:
        model = state.model
        names = self.layers or [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)] or conv_layers(model)
        self.layers = names
        for name in names:
            self.stats.setdefault(name, {kind: [] for kind in self.KINDS})
            self._handles.append(get_layer(model, name).register_forward_hook(self._hook(name)))

    def after_batch(self, state) -> None:
        self._batch += 1
        if self._now:
            self.steps.append(self._batch)
            for name, values in self._now.items():
                for kind, value in zip(self.KINDS, values, strict=True):
                    self.stats[name][kind].append(value)
            self._now = {}

    def after_fit(self, state) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def plot_activation_stats(runs: dict[str, ActivationStats], title: str | None = None):
    """One row per run, one column each for the mean, the standard deviation and the share of zeros,
    a line per layer. Shares of zeros are all drawn from 0 to 1; each mean and standard deviation panel
    has its own scale (one run's spike would flatten another's curves)."""
    import matplotlib.pyplot as plt

    labels = {"mean": "mean", "std": "standard deviation", "zeros": "share of zeros"}
    fig, axes = plt.subplots(len(runs), 3, figsize=(12, 2.8 * len(runs) + 0.6), sharex=True, squeeze=False)
    for row, (run, stats) in zip(axes, runs.items(), strict=True):
        for ax, kind in zip(row, ActivationStats.KINDS, strict=True):
            for layer, values in stats.stats.items():
                ax.plot(stats.steps, values[kind], label=layer, lw=1.2)
            ax.set_title(f"{run}: {labels[kind]}", fontsize=10)
            ax.grid(alpha=0.3)
        row[2].set_ylim(-0.03, 1.03)
        row[2].legend(fontsize=8, title="output of", title_fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    for ax in axes[-1]:
        ax.set_xlabel("training batch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
