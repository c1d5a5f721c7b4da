"""The source projects' recipes side by side: each trained the same way, scored once on a sealed test set.

:func:`compare_recipes` trains each recipe with :func:`mnistlib.recipes.train` while the test loader is
wrapped in a :class:`~mnistlib.evaluation.SealedLoader` (reading it raises); the checkpoint is chosen on
the validation split, and only then is the test set read, once. :func:`recipe_table` shows the rows.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .checkpoints import load_checkpoint
from .data import get_data
from .devices import pick_device
from .evaluation import SealedLoader, predict_all
from .models import count_parameters
from .recipes import SEED_RECIPES, get_recipe, train
from .tables import markdown_table

__all__ = ["Row", "compare_recipes", "recipe_table"]


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


def compare_recipes(
    recipes: Iterable | None = None,
    *,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> list[Row]:
    """Train each recipe (name or :class:`~mnistlib.recipes.Recipe`; default: the five source projects' recipes) with
    :func:`mnistlib.recipes.train`, keep the weights that did best on the validation split, and only then
    score them once on the test set.

    ``overrides`` go to every ``train`` call (e.g. ``epochs=1, subset=2_000`` for a quick check;
    ``verbose=True`` for its per-epoch lines; ``val_size`` for the data); ``log`` gets one line per
    recipe (None: silent).
    Checkpoints go to a temporary folder unless ``checkpoint_dir`` is given.
    """
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
    return Row(recipe=recipe.name, title=recipe.title, model=recipe.model, params=count_parameters(best),
               epochs=recipe.epochs, epochs_run=len(run.history), batch_size=recipe.batch_size, lr=recipe.lr,
               augment=recipe.augment, train_seconds=sum(run.history.train_seconds),
               val_acc=val_acc if val_acc is not None else math.nan, test_acc=test_acc,
               claimed_accuracy=recipe.claimed_accuracy, claimed_parameters=recipe.claimed_parameters,
               train_images=data.train.dataset_size)


def _measured(r: Row) -> list[str]:
    images = "" if r.train_images >= 50_000 else f" ({r.train_images:,} imgs)"
    return [r.title, f"`{r.model}`", f"{r.params:,}", f"{r.epochs_run} of {r.epochs}{images}",
            f"{r.train_seconds:.0f}", f"{r.val_acc:.2%}", f"{r.test_acc:.2%}"]


def _claims(r: Row) -> list[str]:
    return [r.title, r.claimed_accuracy or "—", f"{r.test_acc:.2%}", r.claimed_parameters or "—", f"{r.params:,}"]


def recipe_table(rows: Sequence[Row], part: str = "both") -> str:
    """The rows as markdown: what was measured (recipe, model, params, epochs, time, accuracies) and, in a
    second table, what each write-up claims beside it. ``part``: "measured", "claims" or "both".

    Two narrow tables rather than one of nine columns, so each fits a page.
    """
    if part not in ("measured", "claims", "both"):
        raise ValueError(f"part must be 'measured', 'claims' or 'both', got {part!r}")
    measured = markdown_table(["recipe", "model", "params", "epochs run", "train s", "val acc", "test acc"],
                              list(map(_measured, rows)))
    claims = markdown_table(["recipe", "claimed accuracy", "measured test acc", "claimed params", "measured params"],
                            list(map(_claims, rows)))
    if part != "both":
        return measured if part == "measured" else claims
    return f"{measured}\n\nWhat each write-up claims, beside what was measured:\n\n{claims}"
