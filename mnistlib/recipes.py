"""Recipes — a model plus how to train it — and :func:`train`, the one way the series trains a recipe.

The five projects this series grew from each left a recipe; lesson 06 adds a fast one and a
record one; the quick recipe trains the stand-in model later lessons use when none was trained.
``train(recipe)`` builds the model (after seeding), the data, the optimizer and the callbacks
a real run wants, then calls :func:`mnistlib.training.fit`. :func:`load_or_train` gives a later lesson
lesson 03's model — or trains the quick one when there is none yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import callbacks as cb
from .checkpoints import Checkpoint, CheckpointError, find_checkpoint, load_checkpoint
from .config import quick_mode
from .data import DataBundle, get_data
from .devices import pick_device, seed_everything, threads
from .models import get_model
from .training import History, fit

__all__ = ["Recipe", "RECIPES", "SEED_RECIPES", "get_recipe", "make_optimizer", "make_schedule", "train", "Trained",
           "OPTIMIZERS", "SCHEDULERS", "RUN_SETTINGS", "RESUME_KEEPS", "load_or_train"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "plateau", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """A registry model, the hyperparameters to train it, and what its source claims."""

    name: str
    title: str
    model: str
    model_options: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    optimizer_options: dict = field(default_factory=dict)
    scheduler: str = "none"
    scheduler_options: dict = field(default_factory=dict)
    augment: str = "none"
    target_accuracy: float | None = None  # stop at the first epoch whose validation accuracy reaches it
    patience: int | None = None  # early stopping: epochs without a better validation loss
    channels_last: bool = False  # store the weights channels-last (faster convolutions on some CPUs)
    claimed_accuracy: str = ""
    claimed_parameters: str = ""
    notes: str = ""

    def build(self) -> nn.Module:
        """A fresh registry model for this recipe (channels-last if the recipe says so)."""
        model = get_model(self.model, **self.model_options)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Recipe:
        """The recipe a checkpoint was trained with (its hyperparameters, model name and options)."""
        names = {f.name for f in fields(cls)} - {"model", "model_options"}
        given = {k: v for k, v in ckpt.hparams.items() if k in names}
        defaults = {"name": "custom", "title": f"a {ckpt.name} run"}
        return cls(**(defaults | given), model=ckpt.name, model_options=dict(ckpt.options))


def _recipes(*recipes: Recipe) -> dict[str, Recipe]:
    return {r.name: r for r in recipes}


#: The recipes of the five projects this series grew from, with what their write-ups claim.
SEED_RECIPES: dict[str, Recipe] = _recipes(
    Recipe("digit-recognizer", "the DigitRecognizerCNN recipe", "digit-recognizer", epochs=10, batch_size=128, lr=3e-4,
           augment="rotate5", claimed_accuracy="none stated"),
    Recipe("classic", "the classic PyTorch-example CNN", "classic", epochs=10, batch_size=100, lr=1e-3,
           claimed_accuracy=">98%"),
    Recipe("two-conv", "the two-conv script project", "two-conv", epochs=5, batch_size=64, lr=1e-3,
           claimed_accuracy="~98-99%"),
    Recipe("one-by-one", "the 1×1-convolution net", "one-by-one", epochs=5, batch_size=64, lr=2e-3, scheduler="step",
           scheduler_options={"step_size": 15, "gamma": 0.1}, augment="crop-rotate15",
           claimed_accuracy="98.16% (scored on the 60,000 training images, not the test set)",
           claimed_parameters="24,210", notes="StepLR decays every 15 epochs: with 5 epochs it never fires."),
    Recipe("batchnorm", "the BatchNorm net", "batchnorm", model_options={"hidden": 64}, epochs=10, batch_size=128,
           lr=1e-3, scheduler="plateau", target_accuracy=0.95,
           claimed_accuracy="95%+ (stops there), ~98% by epoch 5 with fc 128", claimed_parameters="~25K"),
)

#: Every recipe: the source projects', lesson 06's fast and record recipes, and the quick stand-in model.
RECIPES: dict[str, Recipe] = SEED_RECIPES | _recipes(
    Recipe("fast", "the fast recipe: BatchNorm classic net, OneCycle, 2 epochs", "classic-bn",
           model_options={"hidden": 256, "first_bn": False}, epochs=2, batch_size=128, lr=1e-2,
           optimizer_options={"betas": (0.7, 0.9)}, scheduler="onecycle", scheduler_options={"cycle_momentum": False},
           channels_last=True, notes="Chosen on the validation split (benchmarks/README.md)."),
    Recipe("record", "the record recipe: < 20,000 parameters, BatchNorm + global average pooling", "record",
           epochs=25, batch_size=128, lr=0.1, optimizer="sgd",
           optimizer_options={"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, scheduler="onecycle",
           augment="rotate10-shift2-scale10",
           notes="Chosen on the validation split with benchmarks/record_search.py (benchmarks/README.md)."),
    Recipe("quick", "the quick model: the BatchNorm net, one-cycle, 2 epochs", "batchnorm", epochs=2, batch_size=64,
           lr=5e-3, scheduler="onecycle", notes="A stand-in for lessons that need a trained model and find none."),
)


def get_recipe(name: str | Recipe) -> Recipe:
    """A recipe by name (a :class:`Recipe` is returned as is); unknown names list the known ones."""
    if isinstance(name, Recipe):
        return name
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def make_optimizer(name: str, params: Iterable, lr: float, **options: Any) -> torch.optim.Optimizer:
    """``"adam"`` (the series' default), ``"adamw"`` or ``"sgd"`` (momentum 0.9 unless given)."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **options)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, **options)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **({"momentum": 0.9} | options))
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def make_schedule(name: str, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                  **options: Any) -> cb.LRSchedule | None:
    """A learning-rate schedule as a callback (None for ``"none"``).

    ``"step"``: StepLR (``step_size`` epochs, default 1; ``gamma``, default 0.7), stepped per epoch;
    ``"plateau"``: ReduceLROnPlateau on the validation loss (``factor`` 0.5, ``patience`` 1);
    ``"onecycle"``: OneCycleLR per batch, up to the optimizer's learning rate (``max_lr``).
    """
    sched = torch.optim.lr_scheduler
    name = (name or "none").lower()
    if name == "none":
        return None
    if name == "step":
        return cb.LRSchedule(sched.StepLR(optimizer, **({"step_size": 1, "gamma": 0.7} | options)), "epoch")
    if name == "plateau":
        return cb.LRSchedule(sched.ReduceLROnPlateau(optimizer, **({"factor": 0.5, "patience": 1} | options)),
                             "val_loss")
    if name == "onecycle":
        max_lr = options.pop("max_lr", optimizer.param_groups[0]["lr"])
        total = max(1, epochs * steps_per_epoch)
        return cb.LRSchedule(sched.OneCycleLR(optimizer, max_lr, total_steps=total, **options), "batch")
    raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


#: Settings of a run that are not part of its recipe, with their defaults (``train(..., seed=1)``).
RUN_SETTINGS: dict[str, Any] = {
    "seed": 0, "subset": None, "device": None, "checkpoint_dir": None, "save": True, "tag": "", "resume": None,
    "verbose": True, "loss_fn": None,
}


@dataclass
class Trained:
    """What :func:`train` returns: the trained model (eval mode), its history, the data and the recipe."""

    model: nn.Module
    history: History
    data: DataBundle
    recipe: Recipe


def _split(recipe: Recipe, overrides: dict) -> tuple[Recipe, dict]:
    """Apply recipe-field overrides; return the recipe and the run settings (unknown names refused)."""
    names = {f.name for f in fields(Recipe)}
    unknown = sorted(set(overrides) - names - set(RUN_SETTINGS))
    if unknown:
        raise TypeError(f"train() got unknown setting(s) {', '.join(unknown)}; recipe fields: "
                        f"{', '.join(sorted(names))}; run settings: {', '.join(RUN_SETTINGS)}")
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if k in names})
    return recipe, RUN_SETTINGS | {k: v for k, v in overrides.items() if k in RUN_SETTINGS}


def default_callbacks(recipe: Recipe, settings: dict, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                      schedule_epochs: int | None = None) -> list:
    """The callbacks a run of ``recipe`` gets: its schedule (over ``schedule_epochs``, default the recipe's)
    and stopping rules, checkpoints, timing, Ctrl-C safety, and (when ``verbose``) a progress bar, a line
    per epoch and live curves in a notebook."""
    schedule = make_schedule(recipe.scheduler, optimizer, epochs=schedule_epochs or recipe.epochs,
                             steps_per_epoch=steps_per_epoch, **recipe.scheduler_options)
    callbacks: list = [c for c in [schedule] if c is not None]
    callbacks += [cb.StopOnNonFiniteLoss(), cb.Timer(), cb.StopOnInterrupt()]
    if recipe.target_accuracy is not None:
        callbacks.append(cb.TargetAccuracy(recipe.target_accuracy))
    if recipe.patience is not None:
        callbacks.append(cb.EarlyStopping(recipe.patience))
    if settings["save"]:
        hparams = asdict(recipe) | {k: settings[k] for k in ("seed", "subset", "tag")}
        callbacks.append(cb.SaveCheckpoints(settings["checkpoint_dir"], hparams=hparams, tag=settings["tag"]))
    if settings["verbose"]:
        callbacks += [cb.ProgressBar(), cb.PrintEpochs()]
        if cb.in_notebook():
            callbacks.append(cb.LiveCurves(recipe.target_accuracy))
    return callbacks


def _resume(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, callbacks: list,
            data: DataBundle, fresh_schedule: bool = False) -> History:
    """Put the run back where ``ckpt`` left it: weights, optimizer, random state, callbacks, shuffling."""
    model.load_state_dict(ckpt.model.state_dict())
    if ckpt.optimizer_state:
        optimizer.load_state_dict(ckpt.optimizer_state)  # after the schedule was built: it resets lr/momentum
    states = ckpt.extra.get("callbacks") or {}
    cb.restore_callbacks(callbacks, {k: v for k, v in states.items() if not (fresh_schedule and k == "LRSchedule")})
    rng = ckpt.extra.get("rng_state")
    if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8:
        torch.set_rng_state(rng)  # dropout continues as in an uninterrupted run
    return History.from_dict(ckpt.history)


def train(recipe: str | Recipe, data: DataBundle | None = None, *, callbacks: Iterable | None = None,
          **overrides: Any) -> Trained:
    """Train a recipe (a name or a :class:`Recipe`) and return the :class:`Trained` model and history.

    ``overrides`` change recipe fields (``epochs=3``, ``lr=0.01``) or run settings (:data:`RUN_SETTINGS`:
    ``seed``, ``subset``, ``device``, ``checkpoint_dir``, ``save``, ``tag``, ``resume``, ``verbose``, and
    ``loss_fn``: the training loss, default cross-entropy; validation always scores cross-entropy).
    ``callbacks`` are added to :func:`default_callbacks`. With ``resume`` (a checkpoint or its path) the
    run continues where it stopped, ``epochs`` more epochs (default: the ones it had left).
    """
    ckpt = _load(overrides.get("resume"))
    if ckpt is not None:
        recipe, overrides = Recipe.from_checkpoint(ckpt), _resume_overrides(ckpt, overrides)
    recipe, settings = _split(get_recipe(recipe), overrides)
    device = pick_device(settings["device"], verbose=settings["verbose"])
    seed_everything(settings["seed"])
    model = recipe.build().to(device)
    if data is None:
        data = get_data(recipe.batch_size, recipe.augment, subset=settings["subset"], seed=settings["seed"],
                        device=device)
    if hasattr(data.train, "epoch"):  # mnistlib's loaders shuffle by epoch number: the same shuffles every run
        data.train.epoch = ckpt.epoch if ckpt is not None else 0
    optimizer = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, **recipe.optimizer_options)
    planned, span = _plan(ckpt, recipe.epochs)
    callbacks = default_callbacks(replace(recipe, epochs=planned), settings, optimizer, len(data.train), span) + list(
        callbacks or [])
    history = _resume(ckpt, model, optimizer, callbacks, data, span != planned) if ckpt is not None else None
    history = fit(model, data, optimizer, epochs=recipe.epochs, loss_fn=settings["loss_fn"], device=device,
                  callbacks=callbacks, history=history)
    return Trained(model, history, data, recipe)


def _plan(ckpt: Checkpoint | None, epochs: int) -> tuple[int, int]:
    """(the run's planned last epoch, the epochs its learning-rate schedule spans).

    A resumed run keeps its original plan, schedule included, unless it now goes past it: then the
    schedule starts afresh over the new epochs.
    """
    if ckpt is None:
        return epochs, epochs
    planned = int(ckpt.hparams.get("epochs") or ckpt.epoch)
    if ckpt.epoch + epochs <= planned:
        return planned, planned
    print(f"(the run goes past its planned {planned} epochs: its learning-rate schedule starts afresh)")
    return ckpt.epoch + epochs, epochs


def _load(resume: str | Path | Checkpoint | None) -> Checkpoint | None:
    if resume is None or isinstance(resume, Checkpoint):
        return resume
    return load_checkpoint(resume)


#: What a resumed run keeps from its checkpoint, so that it continues exactly as if it had never stopped
#: (the optimizer's moments, the schedule's steps, the batches and the data all depend on them). ``epochs``,
#: ``target_accuracy``, the device and where checkpoints go may change.
RESUME_KEEPS = ("optimizer", "optimizer_options", "scheduler", "scheduler_options", "lr", "batch_size", "augment",
                "channels_last", "patience", "seed", "subset")


def _resume_changes(ckpt: Checkpoint, given: dict) -> list[str]:
    """What ``given`` would change of the run stored in ``ckpt`` (see :data:`RESUME_KEEPS`), in words."""
    recipe = Recipe.from_checkpoint(ckpt)
    changes = []
    for key in RESUME_KEEPS:
        had = getattr(recipe, key) if hasattr(recipe, key) else ckpt.hparams.get(key, RUN_SETTINGS[key])
        if key in given and given[key] != had:
            changes.append(f"its {key} {had!r} (not {given[key]!r})")
    return changes


def _resume_overrides(ckpt: Checkpoint, overrides: dict) -> dict:
    """Resuming: the original run's seed, subset and tag, and ``epochs`` means epochs *more* — by default
    those the original run had left. What would make it continue differently is refused (ValueError)."""
    given = {k: v for k, v in overrides.items() if k != "resume"}
    if any(k in given for k in ("model", "model_options")):
        raise ValueError("a resumed run keeps the checkpoint's model: model and model_options cannot change")
    changes = _resume_changes(ckpt, given)
    if changes:
        raise ValueError(f"a resumed run continues exactly as it was trained, so it keeps {'; '.join(changes)}: "
                         "only the epochs, the target accuracy, the device and where checkpoints go can change")
    kept = {k: ckpt.hparams[k] for k in ("seed", "subset", "tag") if ckpt.hparams.get(k) is not None}
    if "epochs" not in given:
        left = int(ckpt.hparams.get("epochs") or 0) - ckpt.epoch
        if left < 1:
            raise ValueError(f"the checkpoint finished its {ckpt.epoch} epochs: pass epochs=N to train N more")
        given["epochs"] = left
    return kept | given


# --------------------------------------------------------------------------- the model a lesson uses


def load_or_train(path: str | Path | None = None, *, tag: str = "lesson-03", folder: str | Path | None = None,
                  device: str | torch.device = "cpu", verbose: bool = True) -> Checkpoint:
    """The model a lesson should use: the checkpoint at ``path`` if given, else the best checkpoint of the
    run tagged ``tag`` (lesson 03's main run by default), else the quick model — trained now if needed.

    Prints which checkpoint it loaded and why. The quick recipe (:data:`mnistlib.recipes.RECIPES`
    ``["quick"]``) takes a couple of minutes on a laptop CPU; under ``MNISTLIB_QUICK`` one epoch on
    20,000 images, on one thread, so the weights are the same on every machine.
    """
    if path is not None:
        ckpt, why = load_checkpoint(path, device), "as asked"
    elif (found := find_checkpoint(tag, folder)) is not None:
        ckpt, why = load_checkpoint(found, device), f"the best checkpoint of the run tagged {tag!r}"
    elif (found := find_checkpoint("quick", folder)) is not None:
        ckpt, why = load_checkpoint(found, device), f"no run tagged {tag!r} yet: the quick model trained earlier"
    else:
        ckpt, why = load_checkpoint(_train_quick(folder, verbose), device), f"no run tagged {tag!r}: trained now"
    if verbose:
        acc = ckpt.best_val_acc
        print(f"Using {ckpt.path.name} — {ckpt.name}, epoch {ckpt.epoch}"  # two lines: each fits a book page
              f"{f', validation accuracy {acc:.2%}' if acc is not None else ''}\n  ({why})")
    return ckpt


def _train_quick(folder: str | Path | None, verbose: bool) -> Path:
    """Train the quick recipe into ``folder``; returns its best checkpoint's path."""
    quick = {"epochs": 1, "subset": 20_000, "device": "cpu"} if quick_mode() else {}
    if verbose:
        print("No trained model found: training the quick model (the BatchNorm net, one-cycle) — this takes a moment.")
    with threads(1 if quick else None):
        run = train("quick", tag="quick", checkpoint_dir=folder, verbose=False, **quick)
    if run.history.best_path is None:
        raise CheckpointError("training the quick model was interrupted before it finished an epoch")
    return run.history.best_path
