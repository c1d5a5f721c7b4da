"""Callbacks: everything a training run does besides the loop, each a small class that owns its state.

:func:`mnistlib.training.fit` calls a callback's methods at named moments (``before_fit``,
``before_epoch``, ``after_batch``, ``after_train``, ``after_epoch``, ``on_interrupt``,
``after_fit``); each gets the :class:`~mnistlib.training.FitState`. Callbacks run in order of
their ``order`` attribute. One that keeps state between runs has ``state_dict`` and
``load_state_dict``, so a checkpoint stores it and resuming restores it.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import config
from ._support.signals import deferred_signals
from .checkpoints import checkpoint_path, clean_stale, new_run_stamp, release_stamp, save_checkpoint
from .devices import synchronize
from .training import FitState, StopTraining

__all__ = [
    "Callback",
    "TrainingDiverged",
    "LRSchedule",
    "StopOnNonFiniteLoss",
    "Timer",
    "SaveCheckpoints",
    "TargetAccuracy",
    "EarlyStopping",
    "StopOnInterrupt",
    "ProgressBar",
    "PrintEpochs",
    "LiveCurves",
    "LRFinder",
]


class TrainingDiverged(RuntimeError):
    """The loss became infinite or NaN: the weights are ruined, so the run stops and nothing is saved."""


class Callback:
    """Does nothing at every moment; subclasses define the moments they care about."""

    order = 0

    def state_dict(self) -> dict:
        """What must survive a restart (plain numbers, strings, tensors); nothing by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` returned."""


class LRSchedule(Callback):
    """Step a ``torch.optim.lr_scheduler`` after every batch, every epoch, or on the validation loss."""

    order = 10

    def __init__(self, scheduler: Any, every: str = "epoch") -> None:
        if every not in ("batch", "epoch", "val_loss"):
            raise ValueError(f"every must be 'batch', 'epoch' or 'val_loss', got {every!r}")
        self.scheduler, self.every = scheduler, every

    def after_batch(self, state: FitState) -> None:
        if self.every == "batch":
            self.scheduler.step()

    def after_epoch(self, state: FitState) -> None:
        if self.every == "epoch":
            self.scheduler.step()
        elif self.every == "val_loss" and not math.isnan(state.val_loss):
            self.scheduler.step(state.val_loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


class StopOnNonFiniteLoss(Callback):
    """Stop at the first batch whose loss is infinite or NaN (a learning rate far too high, usually)."""

    order = -90

    def after_batch(self, state: FitState) -> None:
        if not math.isfinite(state.batch_loss):
            lr = state.optimizer.param_groups[0]["lr"]
            raise TrainingDiverged(f"the loss became {state.batch_loss} at epoch {state.epoch}, batch {state.batch}: "
                                   f"the weights are ruined (learning rate {lr:g}; try a smaller one)")


class Timer(Callback):
    """Record each epoch's training seconds and validation seconds apart, in the history."""

    order = -50

    def before_epoch(self, state: FitState) -> None:
        synchronize(state.device)
        self._start = time.perf_counter()

    def after_train(self, state: FitState) -> None:
        synchronize(state.device)
        self._trained = time.perf_counter()

    def after_epoch(self, state: FitState) -> None:
        state.history.train_seconds.append(self._trained - self._start)
        state.history.val_seconds.append(time.perf_counter() - self._trained)


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


class SaveCheckpoints(Callback):
    """Save ``best_model_<stamp>.pth`` at each new best validation accuracy and ``final_model_<stamp>.pth``
    after every epoch (the last completed one), atomically, with every callback's state for resuming.

    ``hparams`` are recorded as given (e.g. the recipe); ``tag`` names the run (e.g. ``"lesson-03"``) so it
    can be found again. A model whose weights are not finite is never saved.
    """

    order = 50

    def __init__(self, folder: str | Path | None = None, *, hparams: dict | None = None, tag: str = "") -> None:
        self.folder = Path(folder) if folder is not None else config.checkpoint_dir()
        self.hparams, self.tag = dict(hparams or {}), tag
        self.stamp: str | None = None

    def before_fit(self, state: FitState) -> None:
        clean_stale(self.folder)  # what runs killed earlier left behind: temporaries, locks
        self.stamp = new_run_stamp(self.folder)
        best = state.history.best_val_acc
        self.best = best if best is not None else -math.inf

    def after_epoch(self, state: FitState) -> None:
        if not _finite(state.model):
            return
        with deferred_signals():  # a Ctrl-C now waits until the files are complete and recorded
            if not math.isnan(state.val_acc) and state.val_acc > self.best:
                self.best = state.val_acc
                state.history.best_path = self._save("best", state)
            state.history.final_path = self._save("final", state)

    def after_fit(self, state: FitState) -> None:
        if self.stamp is not None:
            release_stamp(self.stamp, self.folder)

    def _save(self, kind: str, state: FitState) -> Path:
        return save_checkpoint(
            checkpoint_path(kind, self.stamp, self.folder), state.model, hparams=self.hparams | {"tag": self.tag},
            history=state.history.to_dict(), mean=state.data.mean, std=state.data.std, epoch=state.epoch,
            optimizer_state=state.optimizer.state_dict(),
            extra={"rng_state": torch.get_rng_state(), "callbacks": callback_states(state.callbacks)})


class TargetAccuracy(Callback):
    """Stop at the first epoch whose validation accuracy reaches ``target`` (a fraction, e.g. 0.99)."""

    order = 80

    def __init__(self, target: float) -> None:
        if not 0 < target <= 1:
            raise ValueError(f"target accuracy is a fraction in (0, 1], e.g. 0.99 — got {target}")
        self.target = target

    def after_epoch(self, state: FitState) -> None:
        if state.val_acc >= self.target and state.epoch < state.epochs:
            raise StopTraining(f"reached the target validation accuracy {self.target:.2%} at epoch {state.epoch}")


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` epochs; keep the best weights.

    "Improved" means lower than the best so far by more than ``min_delta``. At the end the model gets
    the weights of its best epoch back (``restore_best``), as Keras and Lightning do.
    """

    order = 80

    def __init__(self, patience: int = 3, min_delta: float = 0.0, restore_best: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"patience must be ≥ 1 epoch, got {patience}")
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.best, self.best_epoch, self.wait = math.inf, 0, 0
        self.best_weights: dict | None = None

    def after_epoch(self, state: FitState) -> None:
        if state.val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = state.val_loss, state.epoch, 0
            self.best_weights = copy.deepcopy(state.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            raise StopTraining(f"validation loss has not improved for {self.patience} epochs "
                               f"(best {self.best:.4f} at epoch {self.best_epoch})")

    def after_fit(self, state: FitState) -> None:
        if self.restore_best and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


class StopOnInterrupt(Callback):
    """Ctrl-C (SIGINT) or SIGTERM: finish the batch in progress, then stop; a second one stops at once.

    ``fit`` then returns the history of the completed epochs; the checkpoints saved so far stay.
    """

    order = 100  # its after_fit runs last, so signals stay gentle until the run has tidied up

    def __init__(self) -> None:
        self.requested: str = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: stopping after this batch… (again to stop at once)", file=sys.stderr, flush=True)

    def before_fit(self, state: FitState) -> None:
        self.requested = ""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._handler)

    def after_batch(self, state: FitState) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def after_fit(self, state: FitState) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old.clear()


def _tqdm_disabled() -> bool:
    """``$TQDM_DISABLE`` is set: tqdm.auto's notebook bar ignores it, so the bar honours it itself."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss and accuracy of the batches so far."""

    order = 90

    def __init__(self) -> None:
        self.bar: Any = None

    def before_epoch(self, state: FitState) -> None:
        self.bar = tqdm(total=len(state.data.train), desc=f"epoch {state.epoch}/{state.epochs}", unit="batch",
                        leave=False, disable=_tqdm_disabled())

    def after_batch(self, state: FitState) -> None:
        self.bar.set_postfix(loss=f"{state.batch_loss:.4f}", acc=f"{state.batch_acc:.2%}", refresh=False)
        self.bar.update()

    def after_train(self, state: FitState) -> None:
        self.close()

    def after_fit(self, state: FitState) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar of the epoch in progress, if any."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _epoch_line(state: FitState) -> str:
    val = (f"val loss {state.val_loss:.4f} acc {state.val_acc:6.2%}" if not math.isnan(state.val_acc)
           else "val (none)")
    star = "  ★ best" if state.history.best_epoch == state.epoch else ""
    return (f"epoch {state.epoch:>2}/{state.epochs}  train loss {state.train_loss:.4f} acc {state.train_acc:6.2%}"
            f"  {val}  lr {state.history.lr[-1]:.2e}{star}")


class PrintEpochs(Callback):
    """One line per epoch, and one at the end saying how the run ended and what it saved."""

    order = 90

    def after_epoch(self, state: FitState) -> None:
        seconds = state.history.train_seconds[-1] + state.history.val_seconds[-1] if state.history.val_seconds else None
        print(_epoch_line(state) + (f"  {seconds:5.1f} s" if seconds is not None else ""), flush=True)

    def after_fit(self, state: FitState) -> None:
        h = state.history
        if h.stop_reason:
            print(f"Stopped: {h.stop_reason}.")
        if h.interrupted:
            print(f"Interrupted: returning the history of the {len(h)} completed epoch(s).", flush=True)
        for kind, path in (("best", h.best_path), ("final", h.final_path)):
            if path is not None:
                print(f"{kind} checkpoint: {_shown(path)}")


def _shown(path: Path) -> str:
    """``path`` by name when it lies in the checkpoint folder (outputs carry no machine paths), else whole."""
    try:
        return f"{path.relative_to(config.checkpoint_dir())} (in checkpoint_dir())"
    except ValueError:
        return str(path)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be redrawn in place)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveCurves(Callback):
    """The loss and accuracy curves, redrawn in place in the notebook after every epoch."""

    order = 95

    def __init__(self, target_accuracy: float | None = None) -> None:
        self.target = target_accuracy
        self.fig: Any = None
        self.handle: Any = None

    def after_epoch(self, state: FitState) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from .plots import draw_history

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.6))
        draw_history(self.axes, state.history, self.target)
        self.fig.tight_layout()
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def after_fit(self, state: FitState) -> None:
        import matplotlib.pyplot as plt

        if self.fig is not None:
            plt.close(self.fig)  # so the notebook does not show it a second time
            self.fig = self.handle = None


def callback_keys(callbacks: Sequence[Any]) -> list[str]:
    """A unique name per callback: its class name, then ``#2``, ``#3``… for more of the same class."""
    keys: list[str] = []
    for cb in callbacks:
        name = type(cb).__name__
        keys.append(name if name not in keys else f"{name}#{sum(k.split('#')[0] == name for k in keys) + 1}")
    return keys


def callback_states(callbacks: Sequence[Any]) -> dict[str, dict]:
    """Each stateful callback's ``state_dict`` under its unique name (what :class:`SaveCheckpoints` stores)."""
    return {key: cb.state_dict() for key, cb in zip(callback_keys(callbacks), callbacks, strict=True)
            if hasattr(cb, "state_dict") and cb.state_dict()}


def restore_callbacks(callbacks: Sequence[Any], states: dict[str, dict]) -> None:
    """Give each callback back the state a checkpoint stored under its name (see :func:`callback_states`)."""
    for key, cb in zip(callback_keys(callbacks), callbacks, strict=True):
        if key in states and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(states[key])


class LRFinder(Callback):
    """The learning-rate range test (Smith, 2017; fastai's ``lr_find``) as a callback.

    From ``start_lr`` the rate grows by the same factor every batch, to ``end_lr`` after ``num_it``
    batches; ``lrs`` and ``losses`` (each batch's loss, smoothed) record the run. It stops once the
    smoothed loss passes 4× its lowest value, and gives the model and optimizer back their state.
    """

    order = 10

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, beta: float = 0.9) -> None:
        if not 0 < start_lr < end_lr or num_it < 2 or not 0 <= beta < 1:
            raise ValueError("need 0 < start_lr < end_lr, num_it ≥ 2 and 0 ≤ beta < 1")
        self.start_lr, self.end_lr, self.num_it, self.beta = start_lr, end_lr, num_it, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def rate(self, i: int) -> float:
        """The learning rate of batch ``i`` (counted from 0)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / self.num_it)

    def before_fit(self, state: FitState) -> None:
        self._saved = copy.deepcopy(state.model.state_dict()), copy.deepcopy(state.optimizer.state_dict())
        self._loss_fn, self._last = state.loss_fn, math.nan
        state.loss_fn = self._noting  # for this run: fit reports running means, the test needs each batch's loss
        self.lrs, self.losses, self._mean = [], [], 0.0
        self._set_rate(state, 0)

    def _noting(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self._loss_fn(logits, y)
        self._last = loss.item()
        return loss

    def _set_rate(self, state: FitState, i: int) -> None:
        for group in state.optimizer.param_groups:
            group["lr"] = self.rate(i)

    def after_batch(self, state: FitState) -> None:
        i = len(self.lrs)
        self._mean = self.beta * self._mean + (1 - self.beta) * self._last
        self.lrs.append(self.rate(i))
        self.losses.append(self._mean / (1 - self.beta ** (i + 1)))  # bias-corrected
        if not math.isfinite(self.losses[-1]) or self.losses[-1] > 4 * min(self.losses):
            raise StopTraining(f"the loss diverged at learning rate {self.lrs[-1]:.2g}")
        if i + 1 >= self.num_it:
            raise StopTraining(f"{self.num_it} batches, up to learning rate {self.lrs[-1]:.2g}")
        self._set_rate(state, i + 1)  # for the next batch

    def after_fit(self, state: FitState) -> None:
        weights, optimizer_state = self._saved
        state.model.load_state_dict(weights)
        state.optimizer.load_state_dict(optimizer_state)  # its learning rate and running averages too
        state.optimizer.zero_grad()

    @property
    def min_lr(self) -> float:
        """The rate at which the smoothed loss was lowest."""
        return self.lrs[min(range(len(self.losses)), key=self.losses.__getitem__)]

    def suggestion(self) -> float:
        """A tenth of :attr:`min_lr`: still on the falling part, safely below where the loss turns up."""
        return self.min_lr / 10
