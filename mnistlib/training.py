"""Training: the loop, ``fit`` around it, devices, schedules, live curves and a quick model.

:func:`train_one_epoch` *is* the training loop — a dozen lines that lesson 03 explains line by
line — and :func:`fit` runs it once per epoch, adding what a real run needs: validation, a
learning-rate schedule, early stopping at a target accuracy, checkpoints, a progress bar, live
curves in a notebook, a clean stop on Ctrl-C and resuming from a checkpoint.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from . import config
from .checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    new_run_stamp,
    release_stamp,
    save_checkpoint,
)
from .data import DataBundle, get_data
from .devices import model_device, pick_device, seed_everything
from .models import get_model

__all__ = [
    "History",
    "pick_device",
    "seed_everything",
    "make_optimizer",
    "make_scheduler",
    "OPTIMIZERS",
    "SCHEDULERS",
    "train_one_epoch",
    "evaluate",
    "predict",
    "fit",
    "LivePlot",
    "plot_history",
    "plot_predictions",
    "save_figure",
    "quick_model",
    "QUICK_MODEL",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "plateau", "onecycle")


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch, plus how the run ended and where it saved.

    Index it like a dict (``history["val_acc"]``) or use attributes (``history.val_acc``).
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False
    interrupted: bool = False
    target_accuracy: float | None = None
    best_path: Path | None = None
    final_path: Path | None = None

    METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def __getitem__(self, key: str) -> list:
        if key not in self.METRICS:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The per-epoch metric names."""
        return self.METRICS

    def __len__(self) -> int:
        return len(self.train_loss)

    def append(self, **values: float) -> None:
        """Add one epoch's numbers (every metric in :attr:`METRICS`)."""
        for key in self.METRICS:
            getattr(self, key).append(values[key])

    def to_dict(self) -> dict[str, list]:
        """The per-epoch lists as a plain dict (what a checkpoint stores)."""
        return {key: list(getattr(self, key)) for key in self.METRICS}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """A History from a checkpoint's (or ``to_dict``'s) lists."""
        names = {f.name for f in fields(cls)}
        h = cls(**{k: list(v) for k, v in d.items() if k in cls.METRICS and k in names})
        if not h.epoch and h.train_loss:
            h.epoch = list(range(1, len(h.train_loss) + 1))
        return h

    @property
    def best_epoch(self) -> int | None:
        """The epoch with the highest validation accuracy (the first, on ties)."""
        pairs = [(a, -e) for e, a in zip(self.epoch, self.val_acc, strict=False) if not math.isnan(a)]
        return -max(pairs)[1] if pairs else None

    @property
    def best_val_acc(self) -> float | None:
        """The highest validation accuracy reached."""
        accs = [a for a in self.val_acc if not math.isnan(a)]
        return max(accs) if accs else None

    def __repr__(self) -> str:
        if not self.train_loss:
            return "History(no epochs)"
        end = " (stopped early)" if self.stopped_early else " (interrupted)" if self.interrupted else ""
        return (f"History({len(self)} epochs{end}: last train loss {self.train_loss[-1]:.4f}, "
                f"best val acc {self.best_val_acc or float('nan'):.2%} at epoch {self.best_epoch})")


# --------------------------------------------------------------------------- device and seeds




# --------------------------------------------------------------------------- optimizer, scheduler


def make_optimizer(name: str, params: Iterable, lr: float, **options: Any) -> torch.optim.Optimizer:
    """``"adam"`` (default of the series), ``"adamw"`` or ``"sgd"`` (momentum 0.9 unless given)."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **options)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, **options)
    if name == "sgd":
        options.setdefault("momentum", 0.9)
        return torch.optim.SGD(params, lr=lr, **options)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    **options: Any,
) -> tuple[Any, str]:
    """A learning-rate scheduler and when to step it: ``"batch"``, ``"epoch"``, ``"val"`` or ``""``.

    ``"step"``: StepLR (``step_size`` epochs, default 1; ``gamma``, default 0.7);
    ``"plateau"``: ReduceLROnPlateau on the validation loss (``factor`` 0.5, ``patience`` 1);
    ``"onecycle"``: OneCycleLR per batch up to ``max_lr`` (default: ``lr``).
    """
    name = (name or "none").lower()
    if name == "none":
        return None, ""
    if name == "step":
        opts = {"step_size": 1, "gamma": 0.7} | options
        return torch.optim.lr_scheduler.StepLR(optimizer, **opts), "epoch"
    if name == "plateau":
        opts = {"mode": "min", "factor": 0.5, "patience": 1} | options
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **opts), "val"
    if name == "onecycle":
        opts = {"max_lr": lr} | options
        total = max(1, epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, total_steps=total, **opts), "batch"
    raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


# --------------------------------------------------------------------------- the loop


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    device: torch.device | str,
    scheduler: Any = None,
    on_batch: Callable[[float, float], None] | None = None,
) -> tuple[float, float]:
    """One pass over ``loader``, updating the weights after every batch; returns (mean loss, accuracy)."""
    model.train()  # dropout on, batch-norm uses batch statistics
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)  # the batch goes where the model is
        optimizer.zero_grad()  # forget the previous batch's gradients
        logits = model(x)  # forward pass: [batch, 10] scores
        loss = loss_fn(logits, y)  # one number: how wrong, on average
        loss.backward()  # backward pass: d(loss)/d(weight) for every weight
        optimizer.step()  # nudge every weight against its gradient
        if scheduler is not None:
            scheduler.step()  # per-batch schedules (OneCycle) move the learning rate
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
        if on_batch is not None:
            on_batch(total_loss / seen, correct / seen)  # progress bar, Ctrl-C check
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, device: torch.device | str | None = None, loss_fn: Callable | None = None
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``loader``, in eval mode and without gradients."""
    device = device or model_device(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss(reduction="sum")
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        batch_loss = loss_fn(logits, y)
        if getattr(loss_fn, "reduction", "mean") == "mean":
            batch_loss = batch_loss * len(y)
        total_loss += batch_loss.item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels for a whole loader, as two int64 CPU tensors."""
    device = device or model_device(model)
    model.eval()
    preds, trues = [], []
    for x, y in loader:
        preds.append(model(x.to(device)).argmax(dim=1).cpu())
        trues.append(y.cpu())
    return torch.cat(preds), torch.cat(trues)


def _require_batchnorm(model: nn.Module) -> None:
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to recalibrate")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Iterable) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from one pass over ``loader``.

    While training, BatchNorm's running statistics follow the (augmented) training batches with
    momentum; evaluation images are not augmented. One pass over clean training images
    (``data.train.without_augmentation()``) replaces them with exact averages over those images.
    The weights are untouched. Wraps :func:`torch.optim.swa_utils.update_bn`; returns ``model``.
    """
    _require_batchnorm(model)
    device = model_device(model)
    torch.optim.swa_utils.update_bn(((x.to(device), y) for x, y in loader), model)
    return model


# --------------------------------------------------------------------------- Ctrl-C


class _StopRequest:
    """While active, the first Ctrl-C asks to stop after the current batch; a second one stops now."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nStopping after this batch… (interrupt again to stop at once)", flush=True)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):  # pragma: no cover - exotic embeddings
                self._old = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _tqdm_disabled() -> bool:
    """``$TQDM_DISABLE`` set: tqdm.auto's notebook bar ignores it, so fit honours it itself."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------- figures


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _draw_history(axes: Any, history: History | dict, target: float | None = None) -> None:
    h = history if isinstance(history, History) else History.from_dict(history)
    ax_loss, ax_acc = axes
    for ax in axes:
        ax.clear()
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.plot(h.epoch, h.train_loss, "o-", label="train")
    ax_loss.plot(h.epoch, h.val_loss, "s-", label="validation")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("Loss")
    ax_acc.plot(h.epoch, [100 * a for a in h.train_acc], "o-", label="train")
    ax_acc.plot(h.epoch, [100 * a for a in h.val_acc], "s-", label="validation")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy")
    target = target if target is not None else h.target_accuracy
    if target is not None:
        ax_acc.axhline(100 * target, color="gray", ls="--", lw=1, label=f"target {target:.1%}")
    best = h.best_epoch
    if best is not None:
        ax_acc.plot([best], [100 * h.val_acc[h.epoch.index(best)]], "*", ms=14, color="gold",
                    mec="black", label="best (saved)")
    for ax in axes:
        if h.epoch:
            ax.set_xticks(h.epoch if len(h.epoch) <= 20 else ax.get_xticks())
            ax.legend(fontsize=8)


def plot_history(history: History | dict, target_accuracy: float | None = None) -> Figure:
    """Loss and accuracy per epoch, train against validation, the best epoch starred."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    _draw_history(axes, history, target_accuracy)
    fig.tight_layout()
    return fig


class LivePlot:
    """The :func:`plot_history` figure, redrawn in place in a notebook after every epoch."""

    def __init__(self, target_accuracy: float | None = None) -> None:
        self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.6))
        self.target = target_accuracy
        self.handle: Any = None

    def update(self, history: History) -> None:
        """Redraw with the epochs so far and refresh the displayed image."""
        from IPython.display import display

        _draw_history(self.axes, history, self.target)
        self.fig.tight_layout()
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def close(self) -> None:
        """Close the figure so the notebook does not show it a second time."""
        plt.close(self.fig)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` as an image (creating folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


@torch.no_grad()
def plot_predictions(
    model: nn.Module | Checkpoint,
    loader: Any,
    n: int = 20,
    ncols: int = 10,
    device: torch.device | str | None = None,
) -> Figure:
    """The first ``n`` images of ``loader`` titled with the prediction (and the truth, in red, when wrong)."""
    from .plots import image_grid

    net = model.model if isinstance(model, Checkpoint) else model
    device = device or model_device(net)
    net.eval()
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        if sum(len(b) for b in xs) >= n:
            break
    x, y = torch.cat(xs)[:n], torch.cat(ys)[:n].cpu()
    pred = net(x.to(device)).argmax(dim=1).cpu()
    mean, std = getattr(loader, "mean", 0.0), getattr(loader, "std", 1.0)
    images = (x.cpu() * std + mean).clamp(0, 1)
    pairs = list(zip(pred.tolist(), y.tolist(), strict=True))
    titles = [f"{p}" if p == t else f"{p} (true {t})" for p, t in pairs]
    colors = ["black" if p == t else "red" for p, t in pairs]
    right = int((pred == y).sum())
    return image_grid(images, titles, ncols=ncols, title_colors=colors,
                      suptitle=f"Predictions: {right} of {len(y)} right")


# --------------------------------------------------------------------------- fit


def _fmt_epoch(epoch: int, last: int, tl: float, ta: float, vl: float, va: float, lr: float, s: float) -> str:
    val = f"val loss {vl:.4f} acc {va:6.2%}" if not math.isnan(va) else "val (skipped)"
    return f"epoch {epoch:>2}/{last}  train loss {tl:.4f} acc {ta:6.2%}  {val}  lr {lr:.2e}  {s:5.1f} s"


def fit(
    model: nn.Module | str | None = None,
    data: DataBundle | None = None,
    *,
    epochs: int = 10,
    batch_size: int | None = None,
    lr: float = 1e-3,
    optimizer: str = "adam",
    optimizer_options: dict | None = None,
    scheduler: str = "none",
    scheduler_options: dict | None = None,
    augment: str | None = None,
    target_accuracy: float | None = None,
    label_smoothing: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    recalibrate_bn: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    subset: int | None = None,
    val_every: int = 1,
    checkpoint_dir: str | Path | None = None,
    save_checkpoints: bool = True,
    resume: str | Path | Checkpoint | None = None,
    model_name: str | None = None,
    model_options: dict | None = None,
    live_plot: bool | None = None,
    progress: bool = True,
    verbose: bool = True,
    on_batch: Callable[[float, float], None] | None = None,
    on_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` more epochs and return the :class:`History`.

    ``model`` is an ``nn.Module``, a registry name (built after seeding) or None with ``resume``.
    ``data`` defaults to :func:`mnistlib.data.get_data` with ``batch_size`` (128), ``augment``,
    ``subset`` and ``seed``; given ``data``, those come from it. Every ``val_every`` epochs (and
    the last) the validation set is scored — never, if ``data`` has none (``val_size=0``: train on
    all 60,000 once the choices are made) — a new best is saved as ``best_model_<stamp>.pth`` in
    ``checkpoint_dir`` and the last state as ``final_model_<stamp>.pth`` at the end.
    ``target_accuracy`` (a fraction, e.g. 0.99) stops at the first epoch whose validation accuracy
    reaches it. ``label_smoothing`` (in [0, 1)) trains towards targets that give that much probability
    to the other classes, spread evenly — a guard against over-confident logits. ``loss_fn(logits,
    labels)`` replaces the cross-entropy for training (e.g. a distillation loss); validation still
    scores cross-entropy, so runs stay comparable. ``recalibrate_bn``
    re-estimates BatchNorm statistics on the unaugmented training images after the last planned
    epoch, before it is scored and saved (:func:`recalibrate_batchnorm`; not after a stop at
    ``target_accuracy`` or Ctrl-C). Ctrl-C stops
    after the current batch and returns the epochs completed so far.
    ``resume`` (a checkpoint path or :class:`Checkpoint`) restores the weights, optimizer,
    scheduler and random state and keeps counting epochs from where it left off.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be ≥ 0, got {epochs}")
    if val_every < 1:
        raise ValueError(f"val_every must be ≥ 1, got {val_every}")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy is a fraction in (0, 1], e.g. 0.99 — got {target_accuracy}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), e.g. 0.1 — got {label_smoothing}")
    if loss_fn is not None and label_smoothing:
        raise ValueError("give label_smoothing or loss_fn, not both: label_smoothing configures the default "
                         "cross-entropy, which loss_fn replaces")
    dev = pick_device(device, verbose=verbose)

    # --- the model (and, when resuming, everything the checkpoint remembers)
    ckpt: Checkpoint | None = None
    if resume is not None:
        ckpt = resume if isinstance(resume, Checkpoint) else load_checkpoint(resume)
        if verbose:
            print(f"Resuming from {ckpt.path.name if ckpt.path else 'checkpoint'} after epoch {ckpt.epoch}")
    seed_everything(seed)
    if model is None or isinstance(model, str):
        if isinstance(model, str) and ckpt is None:
            model_name, model_options = model, dict(model_options or {})
            model = get_model(model_name, **model_options)
        elif ckpt is not None:
            model = ckpt.model
        else:
            raise ValueError("fit needs a model (an nn.Module or a registry name) or resume=")
    elif ckpt is not None:
        model.load_state_dict(ckpt.model.state_dict())
    if ckpt is not None:
        model_name = model_name or ckpt.name
        model_options = model_options if model_options is not None else ckpt.options
    model_name = model_name or getattr(model, "registry_name", None)
    model_options = dict(model_options if model_options is not None else getattr(model, "registry_options", {}))
    model.to(dev)

    # --- the data
    if data is None:
        data = get_data(batch_size=batch_size or 128, augment=augment or "none", subset=subset, seed=seed,
                        device=dev)
    elif verbose:
        for arg, given, used in [("batch_size", batch_size, getattr(data.train, "batch_size", batch_size)),
                                 ("augment", augment, getattr(data, "augment", augment))]:
            if given is not None and given != used:
                print(f"(note: {arg}={given!r} is ignored — the data given to fit was built with {used!r})")
    if recalibrate_bn:
        _require_batchnorm(model)  # before training, not after the last epoch
    if recalibrate_bn and not hasattr(data.train, "without_augmentation"):
        raise ValueError("recalibrate_bn needs mnistlib's in-memory data (get_data): its training loader "
                         "can give the same images without augmentation")
    batch_size = getattr(data.train, "batch_size", batch_size)
    augment = getattr(data, "augment", augment or "none")
    start_epoch = ckpt.epoch if ckpt is not None else 0
    if hasattr(data.train, "epoch"):
        data.train.epoch = start_epoch  # same shuffles as an uninterrupted run
    steps = len(data.train)
    has_val = len(data.val) > 0 if hasattr(data.val, "__len__") else True  # get_data(val_size=0) has none

    # --- loss, optimizer, scheduler
    criterion = loss_fn if loss_fn is not None else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    opt = make_optimizer(optimizer, model.parameters(), lr, **(optimizer_options or {}))
    history = History(target_accuracy=target_accuracy)
    sched_state = None
    if ckpt is not None:
        history = History.from_dict(ckpt.history)
        history.target_accuracy = target_accuracy
        old = ckpt.hparams
        if ckpt.optimizer_state and old.get("optimizer") == optimizer:
            opt.load_state_dict(ckpt.optimizer_state)  # the learning rate and Adam's moments go on
        elif verbose:
            print(f"(optimizer {optimizer!r} starts fresh: the checkpoint used {old.get('optimizer')!r})")
        if old.get("scheduler") == scheduler:
            sched_state = ckpt.scheduler_state
        rng = ckpt.extra.get("rng_state")
        if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8:
            torch.set_rng_state(rng)  # dropout continues as in an uninterrupted run
    sched, when = make_scheduler(scheduler, opt, epochs=epochs, steps_per_epoch=steps, lr=lr,
                                 **(scheduler_options or {}))
    if not has_val and (target_accuracy is not None or when == "val"):
        raise ValueError("target_accuracy and the plateau scheduler need validation images, and this data has "
                         "none (val_size=0)")
    if sched is not None and sched_state:
        left = sched_state.get("total_steps", 0) - sched_state.get("last_epoch", 0)
        if when != "batch" or left >= epochs * steps:
            sched.load_state_dict(sched_state)
            for group, group_lr in zip(opt.param_groups, sched_state.get("_last_lr") or [], strict=False):
                group["lr"] = group_lr
        elif verbose:
            print("(OneCycle starts a new cycle over the remaining epochs)")

    hparams = {
        "epochs": start_epoch + epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
        "optimizer_options": dict(optimizer_options or {}), "scheduler": scheduler,
        "scheduler_options": dict(scheduler_options or {}), "augment": augment,
        "target_accuracy": target_accuracy, "label_smoothing": label_smoothing,
        "loss_fn": getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn is not None else None,
        "recalibrate_bn": recalibrate_bn,
        "seed": seed, "subset": subset,
        "device": str(dev),
        "val_every": val_every, "train_size": getattr(data.train, "dataset_size", None),
    }

    # --- checkpoints
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else config.checkpoint_dir()
    if save_checkpoints and not model_name:
        raise ValueError("to save checkpoints, fit needs model_name= for a model not built by get_model "
                         "(or save_checkpoints=False)")
    stamp = new_run_stamp(folder) if save_checkpoints else None

    def save(kind: str) -> Path:
        return save_checkpoint(
            checkpoint_path(kind, stamp, folder), model, name=model_name, options=model_options,
            hparams=hparams, history=history.to_dict(), mean=data.mean, std=data.std,
            epoch=history.epoch[-1] if history.epoch else start_epoch, optimizer_state=opt.state_dict(),
            scheduler_state=sched.state_dict() if sched is not None else None,
            extra={"rng_state": torch.get_rng_state()},
        )

    best_acc = history.best_val_acc if history.best_val_acc is not None else -1.0
    live = LivePlot(target_accuracy) if (live_plot if live_plot is not None else _in_notebook()) else None
    last = start_epoch + epochs
    stop = _StopRequest()
    try:
        with stop:
            for epoch in range(start_epoch + 1, last + 1):
                t0 = time.perf_counter()
                lr_now = opt.param_groups[0]["lr"]
                bar_kw = {} if progress and not _tqdm_disabled() else {"disable": True}
                with tqdm(data.train, desc=f"epoch {epoch}/{last}", unit="batch", leave=False, **bar_kw) as bar:

                    def batch_done(loss: float, acc: float, bar: Any = bar) -> None:
                        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.2%}", refresh=False)
                        if on_batch is not None:
                            on_batch(loss, acc)
                        if stop.requested:
                            raise KeyboardInterrupt

                    train_loss, train_acc = train_one_epoch(model, bar, opt, criterion, dev,
                                                            sched if when == "batch" else None, batch_done)
                if recalibrate_bn and epoch == last:
                    recalibrate_batchnorm(model, data.train.without_augmentation())
                validate = has_val and ((epoch - start_epoch) % val_every == 0 or epoch == last)
                if validate:
                    val_loss, val_acc = evaluate(model, data.val, dev)
                else:
                    val_loss, val_acc = math.nan, math.nan
                if when == "epoch":
                    sched.step()
                elif when == "val" and validate:
                    sched.step(val_loss)
                seconds = time.perf_counter() - t0
                history.append(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                               val_acc=val_acc, lr=lr_now, seconds=seconds)
                note = ""
                if validate and val_acc > best_acc:
                    best_acc = val_acc
                    if stamp is not None:
                        history.best_path = save("best")
                        note = "  ★ best, saved"
                if verbose:
                    print(_fmt_epoch(epoch, last, train_loss, train_acc, val_loss, val_acc, lr_now, seconds) + note,
                          flush=True)
                if live is not None:
                    live.update(history)
                if on_epoch is not None:
                    on_epoch(history)
                if target_accuracy is not None and validate and val_acc >= target_accuracy:
                    history.stopped_early = epoch < last
                    if verbose:
                        print(f"Reached the target validation accuracy {target_accuracy:.2%} at epoch {epoch}: "
                              "stopping.")
                    break
                if stop.requested:
                    raise KeyboardInterrupt
        if stamp is not None and history.epoch and history.epoch[-1] > start_epoch:
            history.final_path = save("final")
    except KeyboardInterrupt:
        history.interrupted = True
        if verbose:
            n = len(history)
            kept = f"; best checkpoint kept: {history.best_path}" if history.best_path else ""
            print(f"Interrupted: returning the history of {n} completed epoch{'s' if n != 1 else ''}{kept}",
                  flush=True)
    finally:
        if stamp is not None:
            release_stamp(stamp, folder)
        if live is not None:
            live.close()
    model.eval()
    return history


# --------------------------------------------------------------------------- quick model

#: The quick model: the BatchNorm net, one OneCycle epoch of Adam up to 5e-3 in batches of 64 — on
#: 20,000 images in quick mode (≈97.5% validation accuracy), two epochs on all 55,000 otherwise.
QUICK_MODEL: dict[str, Any] = {
    "model": "batchnorm", "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "scheduler": "onecycle",
    "quick_epochs": 1, "quick_subset": 20_000, "full_epochs": 2,
}


def quick_model(
    name: str | None = None,
    *,
    folder: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    retrain: bool = False,
    verbose: bool = True,
) -> Checkpoint:
    """The newest best checkpoint (of model ``name``, if given) — or, when there is none, train one.

    Training uses :data:`QUICK_MODEL` (about 20 s on two CPU cores with ``MNISTLIB_QUICK=1``, a
    couple of minutes without) and saves it like any run. Returns the loaded :class:`Checkpoint`
    with its model on ``device`` in eval mode.
    """
    folder = Path(folder) if folder is not None else config.checkpoint_dir()
    if not retrain:
        for path in reversed(list_checkpoints("best", folder)):
            try:
                ckpt = load_checkpoint(path, device)
            except CheckpointError as exc:
                if verbose:
                    print(f"(skipping {path.name}: {exc})")
                continue
            if name is None or ckpt.name == name:
                if verbose:
                    acc = ckpt.best_val_acc
                    acc_s = f", validation accuracy {acc:.2%}" if acc is not None else ""
                    print(f"Using checkpoint {path.name} ({ckpt.name}, epoch {ckpt.epoch}{acc_s})")
                return ckpt
    arch = name or QUICK_MODEL["model"]
    quick = config.quick_mode()
    subset = QUICK_MODEL["quick_subset"] if quick else None
    epochs = QUICK_MODEL["quick_epochs"] if quick else QUICK_MODEL["full_epochs"]
    if verbose:
        print(f"No checkpoint in {folder}: training a quick model ({arch}, {epochs} epoch(s)"
              f"{f' on {subset:,} images' if subset else ''}) — this takes a moment.")
    threads = torch.get_num_threads()
    if quick:  # one CPU thread: the same weights on every machine, and no thread contention on small CPUs
        torch.set_num_threads(1)
    try:
        history = fit(arch, epochs=epochs, batch_size=QUICK_MODEL["batch_size"], lr=QUICK_MODEL["lr"],
                      optimizer=QUICK_MODEL["optimizer"], scheduler=QUICK_MODEL["scheduler"], subset=subset,
                      seed=seed, device="cpu" if quick else None,
                      checkpoint_dir=folder, live_plot=False, progress=False, verbose=False)
    finally:
        torch.set_num_threads(threads)
    path = history.best_path or history.final_path
    if path is None:  # pragma: no cover - only if interrupted before the first epoch ended
        raise RuntimeError("training the quick model was interrupted before it finished an epoch")
    ckpt = load_checkpoint(path, device)
    if verbose:
        print(f"Saved {path.name}: validation accuracy {ckpt.best_val_acc:.2%}")
    return ckpt

