"""Judge a trained network: accuracy overall and per digit, the confusion matrix, its most
confident mistakes, and a comparison of the seed projects' recipes trained side by side.

Everything takes any ``nn.Module`` that maps normalised ``[N, 1, 28, 28]`` images to ``[N, 10]``
logits and any loader that yields ``(x, y)`` batches (the in-memory loaders of
:func:`mnistlib.data.get_data`, or a torch ``DataLoader``).

The test set gives *final* numbers only. :func:`compare_recipes` enforces that: while a recipe
trains (and its checkpoint is chosen on the validation split) the test loader is wrapped in a
:class:`SealedLoader` that refuses to be read; it is unsealed once, after training, to score the
chosen weights.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import nn

from .checkpoints import load_checkpoint
from .devices import eval_mode
from .plots import image_grid

__all__ = [
    "Predictions",
    "predict_all",
    "accuracy",
    "per_class_accuracy",
    "confusion_matrix",
    "top_confusions",
    "plot_confusion",
    "plot_per_class_accuracy",
    "Mistake",
    "most_confident_mistakes",
    "plot_mistakes",
    "plot_predictions",
    "TestSetSealedError",
    "SealedLoader",
    "Row",
    "compare_recipes",
    "format_table",
]

NUM_CLASSES = 10


# --------------------------------------------------------------------------------------------
# predictions


@dataclass
class Predictions:
    """A model's output on a whole loader: softmax ``probs`` [N, 10], ``preds`` and ``labels`` [N],
    and (optionally) the ``images`` [N, 28, 28] as the model saw them (normalised)."""

    probs: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> torch.Tensor:
        """Boolean mask [N]: which predictions are right."""
        return self.preds == self.labels

    @property
    def accuracy(self) -> float:
        """Fraction of correct predictions."""
        return accuracy(self.preds, self.labels)

    @property
    def confidence(self) -> torch.Tensor:
        """The probability the model gave its own prediction, [N]."""
        return self.probs.gather(1, self.preds.unsqueeze(1)).squeeze(1)


def predict_all(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str | torch.device | None = None,
    keep_images: bool = True,
) -> Predictions:
    """Run ``model`` (in eval mode, no gradients) over every batch of ``loader``; all on the CPU."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model.to(device)
    probs, labels, images = [], [], []
    with eval_mode(model), torch.inference_mode():
        for x, y in loader:
            logits = model(x.to(device))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            labels.append(y.cpu().to(torch.int64))
            if keep_images:
                images.append(x.detach().cpu().float().reshape(len(x), *x.shape[-2:]))
    if not probs:
        raise ValueError("the loader yielded no batches")
    p = torch.cat(probs)
    return Predictions(
        probs=p,
        preds=p.argmax(dim=1),
        labels=torch.cat(labels),
        images=torch.cat(images) if keep_images else None,
    )


# --------------------------------------------------------------------------------------------
# counts


def _check(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    preds, labels = torch.as_tensor(preds).long().flatten(), torch.as_tensor(labels).long().flatten()
    if preds.shape != labels.shape:
        raise ValueError(f"{preds.numel()} predictions but {labels.numel()} labels")
    for name, t in (("predictions", preds), ("labels", labels)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} must be class numbers 0–{num_classes - 1}")
    return preds, labels


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``preds`` equal to ``labels`` (NaN for no examples)."""
    preds, labels = torch.as_tensor(preds).flatten(), torch.as_tensor(labels).flatten()
    if preds.shape != labels.shape:
        raise ValueError(f"{preds.numel()} predictions but {labels.numel()} labels")
    return float((preds == labels).float().mean()) if labels.numel() else math.nan


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Counts ``[true, predicted]`` as an int64 ``[num_classes, num_classes]`` tensor (rows: true digit)."""
    preds, labels = _check(preds, labels, num_classes)
    flat = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Accuracy on the examples of each true class, float ``[num_classes]`` (NaN where a class has none)."""
    cm = confusion_matrix(preds, labels, num_classes).double()
    totals = cm.sum(dim=1)
    return torch.where(totals > 0, cm.diagonal() / totals.clamp(min=1), torch.full_like(totals, math.nan))


def top_confusions(cm: torch.Tensor, k: int = 10) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells as ``(true, predicted, count)``, biggest first (zeros left out)."""
    cm = torch.as_tensor(cm)
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    order = torch.argsort(flat, descending=True, stable=True)[:k]
    n = cm.shape[1]
    return [(int(i) // n, int(i) % n, int(flat[i])) for i in order if flat[i] > 0]


# --------------------------------------------------------------------------------------------
# pictures of the counts


def plot_confusion(
    cm: torch.Tensor,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion matrix (rows: true digit, columns: predicted)",
    size: float = 6.5,
) -> Figure:
    """The confusion matrix as a heat map with every non-zero count written in its cell.

    Colours use a log scale so the handful of mistakes off the diagonal stay visible next to
    the ~1,000 correct answers on it.
    """
    cm_np = torch.as_tensor(cm).detach().cpu().numpy()
    n = cm_np.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(size, size))
    shown = np.ma.masked_equal(cm_np, 0)
    vmax = max(int(cm_np.max()), 2)
    im = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=vmax))
    for i in range(n):
        for j in range(n):
            v = int(cm_np[i, j])
            if v:
                dark = v > math.sqrt(vmax)
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if dark else ("black" if i == j else "firebrick"))
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images (log scale)")
    fig.tight_layout()
    return fig


def plot_per_class_accuracy(acc: torch.Tensor, title: str = "Accuracy per digit") -> Figure:
    """A bar per digit, the y-axis zoomed in on the range the accuracies span."""
    values = torch.as_tensor(acc).double().cpu().numpy() * 100
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(values)), values, color="tab:blue")
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    bottom = max(0.0, math.floor(low - (100 - low) * 0.5 - 0.5))
    ax.set_ylim(bottom, 100 + (100 - bottom) * 0.08)
    for i, v in enumerate(values):
        if np.isfinite(v):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)))
    ax.set_xlabel("true digit")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# mistakes and galleries


@dataclass(frozen=True)
class Mistake:
    """One wrong prediction: its position in the loader, true and predicted digit, the probability
    given to the (wrong) prediction and to the true digit, and the image if it was kept."""

    index: int
    true: int
    pred: int
    prob: float
    true_prob: float
    image: torch.Tensor | None = field(default=None, repr=False, compare=False)


def most_confident_mistakes(predictions: Predictions, k: int = 16) -> list[Mistake]:
    """The ``k`` wrong predictions the model was surest of, most confident first."""
    wrong = (~predictions.correct).nonzero().flatten()
    conf = predictions.confidence[wrong]
    order = torch.argsort(conf, descending=True, stable=True)[:k]
    out = []
    for i in wrong[order].tolist():
        true, pred = int(predictions.labels[i]), int(predictions.preds[i])
        out.append(Mistake(
            index=i,
            true=true,
            pred=pred,
            prob=float(predictions.probs[i, pred]),
            true_prob=float(predictions.probs[i, true]),
            image=predictions.images[i] if predictions.images is not None else None,
        ))
    return out


def plot_mistakes(mistakes: Sequence[Mistake], ncols: int = 8, title: str | None = None) -> Figure:
    """A gallery of mistakes titled "true → predicted" and the probability given to the prediction."""
    if not mistakes:
        raise ValueError("no mistakes to show")
    if any(m.image is None for m in mistakes):
        raise ValueError("these mistakes carry no images: use predict_all(..., keep_images=True)")
    titles = [f"{m.true} → {m.pred}\n{m.prob:.0%}" for m in mistakes]
    return image_grid(
        [m.image for m in mistakes], titles=titles, ncols=ncols, size=1.3,
        title_colors=["firebrick"] * len(mistakes),
        suptitle=title or "Most confident mistakes (true → predicted, probability of the prediction)",
    )


def plot_predictions(predictions: Predictions, n: int = 30, ncols: int = 10, start: int = 0) -> Figure:
    """A grid of test images with the predicted digit and its probability; wrong ones in red."""
    if predictions.images is None:
        raise ValueError("these predictions carry no images: use predict_all(..., keep_images=True)")
    idx = range(start, min(start + n, len(predictions)))
    titles, colors = [], []
    for i in idx:
        pred, ok = int(predictions.preds[i]), bool(predictions.correct[i])
        title = f"{pred} ({float(predictions.probs[i, pred]):.0%})"
        titles.append(title if ok else f"{title}\ntrue {int(predictions.labels[i])}")
        colors.append("darkgreen" if ok else "firebrick")
    return image_grid(
        predictions.images[list(idx)], titles=titles, ncols=ncols, title_colors=colors,
        suptitle="Predictions (probability); wrong ones in red with the true digit",
    )


# --------------------------------------------------------------------------------------------
# the test set stays sealed while a checkpoint is chosen


class TestSetSealedError(RuntimeError):
    """Someone tried to read the test set before training (and the checkpoint choice) ended."""

    __test__ = False  # not a pytest test class


class SealedLoader:
    """Wraps a test loader: iterating it raises :class:`TestSetSealedError` unless inside
    :meth:`unsealed`. ``reads`` counts the passes made while unsealed."""

    __test__ = False

    def __init__(self, loader: Iterable) -> None:
        self._loader = loader
        self.sealed = True
        self.reads = 0

    def __iter__(self) -> Iterator:
        if self.sealed:
            raise TestSetSealedError(
                "the test set is sealed while training and choosing a checkpoint: use the validation split"
            )
        self.reads += 1
        return iter(self._loader)

    def __len__(self) -> int:
        return len(self._loader)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def unsealed(self) -> Iterator[Iterable]:
        """Allow reading for the duration of the block (the final evaluation)."""
        self.sealed = False
        try:
            yield self
        finally:
            self.sealed = True


# --------------------------------------------------------------------------------------------
# the seed recipes side by side


@dataclass
class Row:
    """One recipe's result in :func:`compare_recipes`."""

    recipe: str
    title: str
    model: str
    params: int
    epochs: int
    epochs_run: int
    batch_size: int
    lr: float
    augment: str
    train_seconds: float
    val_acc: float
    test_acc: float
    claimed_accuracy: str
    claimed_parameters: str
    train_images: int


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compare_recipes(
    recipes: Iterable | None = None,
    *,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> list[Row]:
    """Train each recipe (name or :class:`~mnistlib.recipes.Recipe`; default: the five seed recipes) with
    :func:`mnistlib.recipes.train`, keep the weights that did best on the validation split, and only then
    score them once on the test set.

    ``overrides`` go to every ``train`` call (e.g. ``epochs=1, subset=2_000`` for a quick check;
    ``verbose=True`` for its per-epoch lines; ``val_size`` for the data); ``log`` gets one line per
    recipe (None: silent).
    Checkpoints go to a temporary folder unless ``checkpoint_dir`` is given.
    """
    from .recipes import SEED_RECIPES, get_recipe

    chosen = list(SEED_RECIPES.values()) if recipes is None else [get_recipe(r) for r in recipes]
    rows = []
    with contextlib.ExitStack() as stack:
        folder = overrides.pop("checkpoint_dir", None) or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="mnistlib-compare-"))
        for recipe in chosen:
            if log:
                log(f"{recipe.title}: {recipe.model}, {overrides.get('epochs', recipe.epochs)} epoch(s) …")
            rows.append(_train_and_score(recipe, Path(folder) / recipe.name, overrides))
            if log:
                r = rows[-1]
                log(f"  {r.epochs_run} epoch(s) in {r.train_seconds:.1f} s: best validation {r.val_acc:.2%}, "
                    f"test {r.test_acc:.2%}")
    return rows


def _train_and_score(recipe: Any, folder: Path, overrides: dict) -> Row:
    """One row of :func:`compare_recipes`: train on a sealed test set, reload the best weights, then test."""
    from .data import get_data
    from .devices import pick_device
    from .recipes import train

    recipe = replace(recipe, **{k: v for k, v in overrides.items() if hasattr(recipe, k)})
    settings = {k: v for k, v in overrides.items() if not hasattr(recipe, k)}
    device = pick_device(settings.get("device"), verbose=False)
    data = get_data(recipe.batch_size, recipe.augment, val_size=settings.pop("val_size", 5_000),
                    subset=settings.get("subset"), seed=settings.get("seed", 0), device=device)
    sealed = data.test = SealedLoader(data.test)  # type: ignore[assignment]  # training must not read it
    run = train(recipe, data, checkpoint_dir=folder, **({"verbose": False} | settings))
    best = load_checkpoint(run.history.best_path or run.history.final_path, device=device).model
    val_acc = run.history.best_val_acc
    with sealed.unsealed() as test:  # the one read of the test set: final numbers only
        test_acc = predict_all(best, test, device, keep_images=False).accuracy
    return Row(recipe=recipe.name, title=recipe.title, model=recipe.model, params=_count_params(best),
               epochs=recipe.epochs, epochs_run=len(run.history), batch_size=recipe.batch_size, lr=recipe.lr,
               augment=recipe.augment, train_seconds=sum(run.history.train_seconds),
               val_acc=val_acc if val_acc is not None else math.nan, test_acc=test_acc,
               claimed_accuracy=recipe.claimed_accuracy, claimed_parameters=recipe.claimed_parameters,
               train_images=data.train.dataset_size)


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]


def _measured(r: Row) -> list[str]:
    images = "" if r.train_images >= 50_000 else f" ({r.train_images:,} imgs)"
    return [r.title, f"`{r.model}`", f"{r.params:,}", f"{r.epochs_run} of {r.epochs}{images}",
            f"{r.train_seconds:.0f}", f"{r.val_acc:.2%}", f"{r.test_acc:.2%}"]


def _claims(r: Row) -> list[str]:
    return [r.title, r.claimed_accuracy or "—", f"{r.test_acc:.2%}", r.claimed_parameters or "—", f"{r.params:,}"]


def format_table(rows: Sequence[Row], part: str = "both") -> str:
    """The rows as markdown: what was measured (recipe, model, params, epochs, time, accuracies) and, in a
    second table, what each write-up claims beside it. ``part``: "measured", "claims" or "both".

    Two narrow tables rather than one of nine columns, so each fits a page.
    """
    if part not in ("measured", "claims", "both"):
        raise ValueError(f"part must be 'measured', 'claims' or 'both', got {part!r}")
    measured = _markdown(["recipe", "model", "params", "epochs run", "train s", "val acc", "test acc"],
                         map(_measured, rows))
    claims = _markdown(["recipe", "claimed accuracy", "measured test acc", "claimed params", "measured params"],
                       map(_claims, rows))
    if part != "both":
        return "\n".join(measured if part == "measured" else claims)
    return "\n".join([*measured, "", "What each write-up claims, beside what was measured:", "", *claims])
