"""The training loop: :func:`train_one_epoch`, :func:`evaluate`, and :func:`fit`, which runs them.

``train_one_epoch`` *is* the training loop — forward, loss, backward, step for every batch — and
``fit`` runs it once per epoch, scores the validation images after each, and records a
:class:`History`. Everything else a real run needs (a learning-rate schedule, a progress bar,
checkpoints, early stopping, Ctrl-C, live curves, timing) is a callback from
:mod:`mnistlib.callbacks`: an object whose methods ``fit`` calls at named moments of the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .devices import model_device

__all__ = ["History", "StopTraining", "FitState", "train_one_epoch", "evaluate", "fit", "EVENTS"]

#: The moments of a run at which ``fit`` calls its callbacks, in the order they happen.
EVENTS = ("before_fit", "before_epoch", "after_batch", "after_train", "after_epoch", "on_interrupt", "after_fit")


class StopTraining(Exception):
    """Raised by a callback to end ``fit`` early; the message says why (it lands in ``History.stop_reason``)."""


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch, and how the run ended.

    Index it like a dict (``history["val_acc"]``) or use attributes (``history.val_acc``). The
    ``Timer`` callback fills ``train_seconds`` and ``val_seconds``; checkpoint callbacks set the paths.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    val_seconds: list[float] = field(default_factory=list)
    stop_reason: str = ""
    interrupted: bool = False
    best_path: Path | None = None
    final_path: Path | None = None

    METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds", "val_seconds")

    def __getitem__(self, key: str) -> list:
        if key not in self.METRICS:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The per-epoch metric names."""
        return self.METRICS

    def __len__(self) -> int:
        return len(self.epoch)

    def add_epoch(self, epoch: int, train_loss: float, train_acc: float, val_loss: float, val_acc: float,
                  lr: float) -> None:
        """Append one epoch's numbers (the timings are the ``Timer`` callback's to add)."""
        for key, value in zip(self.METRICS, (epoch, train_loss, train_acc, val_loss, val_acc, lr), strict=False):
            getattr(self, key).append(value)

    @property
    def stopped_early(self) -> bool:
        """True when a callback ended the run before its last planned epoch."""
        return bool(self.stop_reason)

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
        """The epoch with the highest validation accuracy (the first, on ties; epochs not scored skipped)."""
        pairs = [(a, -e) for e, a in zip(self.epoch, self.val_acc, strict=False) if not math.isnan(a)]
        return -max(pairs)[1] if pairs else None

    @property
    def best_val_acc(self) -> float | None:
        """The highest validation accuracy reached (None when no epoch was scored)."""
        return best_accuracy(self.val_acc)

    def __repr__(self) -> str:
        if not self.epoch:
            return "History(no epochs)"
        end = f" (stopped: {self.stop_reason})" if self.stop_reason else " (interrupted)" if self.interrupted else ""
        best = self.best_val_acc
        best_s = f", best val acc {best:.2%} at epoch {self.best_epoch}" if best is not None else ""
        return f"History({len(self)} epochs{end}: last train loss {self.train_loss[-1]:.4f}{best_s})"


def best_accuracy(accs: Iterable[float]) -> float | None:
    """The highest accuracy in ``accs``, skipping NaN (an epoch that was not scored); None if none was."""
    scored = [a for a in accs if a is not None and not math.isnan(a)]
    return max(scored) if scored else None


@dataclass
class FitState:
    """Everything ``fit`` is working with; each callback gets it and may read or change it."""

    model: nn.Module
    data: Any  # .train and .val loaders (mnistlib.data.DataBundle or anything with those two)
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    callbacks: Sequence[Any]
    history: History
    epochs: int = 0  # the number of the last epoch this call of fit will train
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches done in this epoch
    batch_loss: float = math.nan  # running mean loss of this epoch so far
    batch_acc: float = math.nan
    train_loss: float = math.nan
    train_acc: float = math.nan
    val_loss: float = math.nan
    val_acc: float = math.nan

    def emit(self, event: str) -> None:
        """Call ``callback.<event>(self)`` on every callback that has that method, in order.

        A :class:`StopTraining` from one callback takes effect once all of them have had the event,
        so a stop never keeps, say, the checkpoint of the last epoch from being written.
        """
        stop = None
        for callback in self.callbacks:
            method = getattr(callback, event, None)
            try:
                if method is not None:
                    method(self)
            except StopTraining as exc:
                stop = stop or exc
        if stop is not None:
            raise stop

    def batch_done(self, loss: float, acc: float) -> None:
        """Called by the loop after every batch with the running loss and accuracy."""
        self.batch, self.batch_loss, self.batch_acc = self.batch + 1, loss, acc
        self.emit("after_batch")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    device: torch.device | str,
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
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
        if on_batch is not None:
            on_batch(total_loss / seen, correct / seen)  # callbacks: schedule, progress bar, Ctrl-C
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``loader``, in eval mode and without gradients."""
    device = device or model_device(model)
    model.eval()  # dropout off, batch-norm uses its running statistics
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _has_images(loader: Any) -> bool:
    return loader is not None and (not hasattr(loader, "__len__") or len(loader) > 0)


def fit(
    model: nn.Module,
    data: Any,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    callbacks: Iterable[Any] = (),
    history: History | None = None,
) -> History:
    """Train ``model`` for ``epochs`` more epochs on ``data.train``, scoring ``data.val`` after each.

    Callbacks run in order of their ``order`` attribute at the moments named in :data:`EVENTS`.
    A callback ends the run by raising :class:`StopTraining`; Ctrl-C ends it after the current batch
    (with the ``StopOnInterrupt`` callback) and still returns. ``history`` continues an earlier run.
    """
    device = torch.device(device) if device is not None else model_device(model)
    ordered = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))  # stable: ties keep the given order
    state = FitState(model.to(device), data, optimizer, loss_fn or nn.CrossEntropyLoss(), device, ordered,
                     history if history is not None else History())
    first = state.history.epoch[-1] + 1 if state.history.epoch else 1
    state.epochs = first + epochs - 1
    try:
        state.emit("before_fit")
        for epoch in range(first, state.epochs + 1):
            state.epoch, state.batch, lr = epoch, 0, optimizer.param_groups[0]["lr"]
            state.emit("before_epoch")
            state.train_loss, state.train_acc = train_one_epoch(
                model, data.train, optimizer, state.loss_fn, device, state.batch_done)
            state.emit("after_train")
            state.val_loss, state.val_acc = evaluate(model, data.val, device) if _has_images(data.val) else (
                math.nan, math.nan)
            state.history.add_epoch(state.epoch, state.train_loss, state.train_acc, state.val_loss,
                                    state.val_acc, lr)
            state.emit("after_epoch")
    except StopTraining as stop:
        state.history.stop_reason = str(stop) or "stopped by a callback"
    except KeyboardInterrupt:
        state.history.interrupted = True
        state.emit("on_interrupt")
    finally:
        state.emit("after_fit")
    model.eval()
    return state.history

