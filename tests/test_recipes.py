"""Recipes and train(): the one way the series trains — settings, checkpoints, exact resume, the quick model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mnistlib import callbacks as cb
from mnistlib.checkpoints import find_checkpoint, load_checkpoint
from mnistlib.data import DataBundle, get_data
from mnistlib.models import count_parameters, list_models
from mnistlib.recipes import (
    RECIPES,
    SEED_RECIPES,
    Recipe,
    get_recipe,
    load_or_train,
    make_optimizer,
    make_schedule,
    train,
)
from mnistlib.training import StopTraining

QUIET = {"device": "cpu", "verbose": False}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(data_root: Path) -> DataBundle:
    return get_data(batch_size=64, subset=512, val_size=500, seed=0, root=data_root)


class StopAfter(cb.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, state) -> None:  # noqa: ANN001
        if state.epoch == self.epoch:
            raise StopTraining("demo")


def test_every_recipe_names_a_registry_model_and_builds() -> None:
    assert set(SEED_RECIPES) < set(RECIPES) and {"fast", "record", "quick"} <= set(RECIPES)
    for recipe in RECIPES.values():
        assert recipe.model in list_models()
        model = recipe.build()
        assert model.registry_name == recipe.model
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == recipe.channels_last
    assert count_parameters(RECIPES["record"].build()) < 20_000
    assert get_recipe("fast") is RECIPES["fast"] and get_recipe(RECIPES["fast"]) is RECIPES["fast"]
    with pytest.raises(KeyError, match="known"):
        get_recipe("nope")


def test_optimizers_and_schedules_by_name() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert make_optimizer("sgd", params, 0.1).defaults["momentum"] == 0.9
    assert isinstance(make_optimizer("adamw", params, 0.1), torch.optim.AdamW)
    opt = make_optimizer("adam", params, 0.1)
    assert make_schedule("none", opt, epochs=1, steps_per_epoch=1) is None
    assert make_schedule("onecycle", opt, epochs=2, steps_per_epoch=3).every == "batch"
    assert make_schedule("plateau", opt, epochs=2, steps_per_epoch=3).every == "val_loss"
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("rmsprop", params, 0.1)
    with pytest.raises(ValueError, match="scheduler"):
        make_schedule("cosine", opt, epochs=1, steps_per_epoch=1)


def test_train_saves_checkpoints_that_record_the_recipe(tiny: DataBundle, tmp_path: Path) -> None:
    run = train("one-by-one", tiny, epochs=2, tag="mine", seed=3, **QUIET)
    assert run.history.epoch == [1, 2] and run.recipe.epochs == 2 and not run.model.training
    final = load_checkpoint(run.history.final_path)
    assert final.name == "one-by-one" and final.epoch == 2
    assert final.hparams["lr"] == 2e-3 and final.hparams["scheduler"] == "step" and final.hparams["seed"] == 3
    assert final.hparams["tag"] == "mine" and Recipe.from_checkpoint(final) == run.recipe
    assert final.history["train_loss"] == run.history.train_loss
    assert find_checkpoint("mine") == run.history.best_path and find_checkpoint("other") is None


def test_unknown_settings_are_refused(tiny: DataBundle) -> None:
    with pytest.raises(TypeError, match="learning_rate"):
        train("classic", tiny, learning_rate=1, **QUIET)


def test_same_seed_same_run_other_seed_other_run(tiny: DataBundle) -> None:
    a, b, c = (train("classic", tiny, epochs=1, seed=s, save=False, **QUIET).history for s in (7, 7, 8))
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert c.train_loss != a.train_loss


@pytest.mark.parametrize("name", ["batchnorm", "quick", "record"])  # plateau, one-cycle (Adam, SGD + momentum)
def test_resume_continues_exactly_the_same_run(tiny: DataBundle, name: str) -> None:
    """Weights, the optimizer, the schedule (and momentum it cycles), the shuffles and dropout all continue."""
    kw = {"target_accuracy": None, "epochs": 3, **QUIET}
    straight = train(name, tiny, **kw).history
    stopped = train(name, tiny, callbacks=[StopAfter(1)], **kw).history
    resumed = train(name, tiny, resume=stopped.final_path, **QUIET).history
    assert resumed.epoch == [1, 2, 3]
    assert resumed.train_loss == straight.train_loss and resumed.lr == straight.lr
    assert resumed.val_acc == straight.val_acc
    assert load_checkpoint(resumed.final_path).hparams["epochs"] == 3


def test_resuming_past_the_plan_starts_a_new_schedule(tiny: DataBundle, capsys: pytest.CaptureFixture) -> None:
    done = train("quick", tiny, epochs=1, **QUIET).history
    with pytest.raises(ValueError, match="epochs=N"):
        train("quick", tiny, resume=done.final_path, **QUIET)
    more = train("quick", tiny, resume=done.final_path, epochs=2, **QUIET).history
    assert more.epoch == [1, 2, 3] and "starts afresh" in capsys.readouterr().out
    assert load_checkpoint(more.final_path).hparams["epochs"] == 3
    with pytest.raises(ValueError, match="keeps the checkpoint's model"):
        train("quick", tiny, resume=done.final_path, epochs=1, model_options={"hidden": 5}, **QUIET)


def test_target_accuracy_and_patience_come_from_the_recipe(tiny: DataBundle) -> None:
    run = train("batchnorm", tiny, target_accuracy=0.05, epochs=3, **QUIET)
    assert run.history.epoch == [1] and "target" in run.history.stop_reason
    patient = dataclasses.replace(get_recipe("classic"), patience=1, epochs=4)
    assert any(isinstance(c, cb.EarlyStopping) for c in _callbacks_of(patient, tiny))


def _callbacks_of(recipe: Recipe, data: DataBundle) -> list:
    seen: list = []

    class Peek(cb.Callback):
        def before_fit(self, state) -> None:  # noqa: ANN001
            seen.extend(state.callbacks)
            raise StopTraining("peeked")

    train(recipe, data, callbacks=[Peek()], **QUIET)
    return seen


def test_load_or_train_prefers_the_tagged_run_then_the_quick_model(tiny: DataBundle, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "models"
    monkeypatch.setenv("MNISTLIB_QUICK", "1")
    import mnistlib.recipes as recipes

    monkeypatch.setattr(recipes, "_train_quick", lambda folder, verbose: train(
        "quick", tiny, epochs=1, tag="quick", checkpoint_dir=folder, **QUIET).history.best_path)
    (folder).mkdir()
    (folder / "best_model_29990101_000000.pth").write_bytes(b"junk")  # newest, but unreadable: skipped
    first = load_or_train(folder=folder, verbose=False)
    assert first.hparams["tag"] == "quick"
    assert load_or_train(folder=folder, verbose=False).path == first.path  # trained once, then reused
    demo = train("classic", tiny, epochs=1, checkpoint_dir=folder, **QUIET)  # newer, untagged: never chosen
    assert load_or_train(folder=folder, verbose=False).path == first.path != demo.history.best_path
    mine = train("classic", tiny, epochs=1, checkpoint_dir=folder, tag="lesson-03", **QUIET)
    assert load_or_train(folder=folder, verbose=False).path == mine.history.best_path
    assert load_or_train(demo.history.final_path, verbose=False).path == demo.history.final_path
    capsys.readouterr()
    load_or_train(folder=folder)  # what the lessons print: the checkpoint, then why, each line narrow enough for a book
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Using {mine.history.best_path.name} — classic, epoch 1")
    assert lines[1:] == ["  (the best checkpoint of the run tagged 'lesson-03')"]
    assert max(len(line) for line in lines) <= 100
