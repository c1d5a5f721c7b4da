"""The loop (train_one_epoch, evaluate, fit) and each callback, on a tiny slice of MNIST."""

from __future__ import annotations

import inspect
import math
import signal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from mnistlib import callbacks as cb
from mnistlib.checkpoints import load_checkpoint
from mnistlib.data import DataBundle, get_data
from mnistlib.models import get_model
from mnistlib.training import EVENTS, History, StopTraining, evaluate, fit, train_one_epoch


@pytest.fixture(scope="module")
def tiny(data_root: Path) -> DataBundle:
    """512 training images, 500 validation images: an epoch takes well under a second."""
    return get_data(batch_size=64, subset=512, val_size=500, seed=0, root=data_root)


def _setup(name: str = "classic", lr: float = 1e-3, seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = get_model(name)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


class Recorder(cb.Callback):
    """Notes every event fit sends, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def __getattr__(self, name: str):  # noqa: ANN204 - any event name
        if name in EVENTS:
            return lambda state: self.events.append((name, state.epoch))
        raise AttributeError(name)


def _scripted_val(monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> None:
    """Make validation report these losses (and accuracy 1 − loss) epoch after epoch."""
    it = iter(losses)
    monkeypatch.setattr("mnistlib.training.evaluate", lambda model, loader, device: (v := next(it), 1 - v))


def test_fit_is_short_and_takes_few_parameters() -> None:
    params = inspect.signature(fit).parameters
    assert len(params) <= 8
    assert len(inspect.getsource(fit).splitlines()) <= 45  # lesson 03 prints and explains it


def test_fit_trains_records_and_numbers_epochs(tiny: DataBundle) -> None:
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=2)
    assert isinstance(h, History) and h.epoch == [1, 2] and h["val_acc"] is h.val_acc
    assert all(0 <= a <= 1 for a in h.train_acc + h.val_acc) and h.lr == [1e-3, 1e-3]
    assert h.train_loss[1] < h.train_loss[0] and not model.training
    assert h.val_loss[-1] == pytest.approx(evaluate(model, tiny.val)[0])
    more = fit(model, tiny, opt, epochs=1, history=h)
    assert more.epoch == [1, 2, 3]  # a history given continues the count


def test_events_arrive_in_order(tiny: DataBundle) -> None:
    rec = Recorder()
    model, opt = _setup()
    fit(model, tiny, opt, epochs=1, callbacks=[rec])
    names = [e for e, _ in rec.events]
    assert names[0] == "before_fit" and names[1] == "before_epoch" and names[-1] == "after_fit"
    assert names.count("after_batch") == len(tiny.train)
    assert names[-3:] == ["after_train", "after_epoch", "after_fit"]


def test_callbacks_run_by_order_then_as_given(tiny: DataBundle) -> None:
    seen = []

    class Mark(cb.Callback):
        def __init__(self, label: str, order: int) -> None:
            self.label, self.order = label, order

        def before_fit(self, state) -> None:  # noqa: ANN001
            seen.append(self.label)

    model, opt = _setup()
    fit(model, tiny, opt, epochs=0, callbacks=[Mark("b", 5), Mark("a", -5), Mark("c", 5)])
    assert seen == ["a", "b", "c"]


def test_a_stop_takes_effect_after_every_callback_saw_the_epoch(tiny: DataBundle, tmp_path: Path) -> None:
    class StopNow(cb.Callback):
        def after_epoch(self, state) -> None:  # noqa: ANN001
            raise StopTraining("enough")

    model, opt = _setup()
    save = cb.SaveCheckpoints(tmp_path)  # order 50: after StopNow, and it still saves epoch 1
    h = fit(model, tiny, opt, epochs=3, callbacks=[StopNow(), save])
    assert h.epoch == [1] and h.stop_reason == "enough" and h.stopped_early
    assert load_checkpoint(h.final_path).epoch == 1


def test_save_checkpoints_best_and_final_with_one_stamp(tiny: DataBundle, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_val(monkeypatch, [0.5, 0.2, 0.3])
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=3, callbacks=[cb.SaveCheckpoints(tmp_path, hparams={"lr": 1e-3}, tag="t")])
    assert h.best_path.name[len("best_model_"):] == h.final_path.name[len("final_model_"):]
    best, final = load_checkpoint(h.best_path), load_checkpoint(h.final_path)
    assert best.epoch == 2 and final.epoch == 3 and final.history["val_loss"] == [0.5, 0.2, 0.3]
    assert final.hparams == {"lr": 1e-3, "tag": "t"} and final.mean == pytest.approx(tiny.mean)
    assert not list(tmp_path.glob(".*"))  # no lock or temporary file left


def test_nan_epochs_never_count_as_best(tiny: DataBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_val(monkeypatch, [math.nan, 0.4])
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=2, callbacks=[cb.SaveCheckpoints(tmp_path)])
    assert h.best_val_acc == pytest.approx(0.6) and h.best_epoch == 2
    assert load_checkpoint(h.best_path).epoch == 2


def test_target_accuracy_stops_at_the_first_epoch_reaching_it(tiny: DataBundle, monkeypatch) -> None:
    _scripted_val(monkeypatch, [0.5, 0.2, 0.05, 0.01])
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=4, callbacks=[cb.TargetAccuracy(0.9)])
    assert h.epoch == [1, 2, 3] and "target" in h.stop_reason
    with pytest.raises(ValueError, match="fraction"):
        cb.TargetAccuracy(99)


def test_target_reached_on_the_last_epoch_is_not_early(tiny: DataBundle, monkeypatch) -> None:
    _scripted_val(monkeypatch, [0.5, 0.05])
    model, opt = _setup()
    assert not fit(model, tiny, opt, epochs=2, callbacks=[cb.TargetAccuracy(0.9)]).stopped_early


def test_early_stopping_waits_patience_epochs_and_restores_the_best(tiny: DataBundle, monkeypatch) -> None:
    _scripted_val(monkeypatch, [0.5, 0.3, 0.35, 0.31, 0.4, 0.1])
    seen: dict[int, torch.Tensor] = {}

    class Snapshot(cb.Callback):
        def after_epoch(self, state) -> None:  # noqa: ANN001
            seen[state.epoch] = state.model.classifier[-1].weight.detach().clone()

    model, opt = _setup()
    stop = cb.EarlyStopping(patience=3)
    h = fit(model, tiny, opt, epochs=6, callbacks=[stop, Snapshot()])
    assert h.epoch == [1, 2, 3, 4, 5] and "not improved for 3 epochs" in h.stop_reason
    assert torch.equal(model.classifier[-1].weight, seen[2])  # the best epoch's weights are back
    assert stop.state_dict() == {"best": 0.3, "best_epoch": 2, "wait": 3}
    with pytest.raises(ValueError, match="patience"):
        cb.EarlyStopping(patience=0)


def test_non_finite_loss_stops_and_saves_nothing(tiny: DataBundle, tmp_path: Path) -> None:
    model, opt = _setup(lr=1e30)
    with pytest.raises(cb.TrainingDiverged, match="learning rate"):
        fit(model, tiny, opt, epochs=2, callbacks=[cb.StopOnNonFiniteLoss(), cb.SaveCheckpoints(tmp_path)])
    assert not list(tmp_path.glob("*.pth")) and not list(tmp_path.glob(".*"))


def test_ctrl_c_returns_the_completed_epochs_and_keeps_checkpoints(tiny: DataBundle, tmp_path: Path) -> None:
    class PressCtrlC(cb.Callback):
        def after_batch(self, state) -> None:  # noqa: ANN001
            if state.epoch == 2 and state.batch == 3:
                raise KeyboardInterrupt

    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=3, callbacks=[PressCtrlC(), cb.SaveCheckpoints(tmp_path)])
    assert h.interrupted and h.epoch == [1]
    assert load_checkpoint(h.best_path).epoch == 1 and load_checkpoint(h.final_path).epoch == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_current_batch(tiny: DataBundle, signum: int) -> None:
    before = signal.getsignal(signum)
    batches = []

    class Send(cb.Callback):
        def after_batch(self, state) -> None:  # noqa: ANN001
            batches.append(state.batch)
            if len(batches) == 2:
                signal.raise_signal(signum)  # the handler only asks to stop…

    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=2, callbacks=[Send(), cb.StopOnInterrupt()])
    assert batches == [1, 2] and h.interrupted and len(h) == 0  # …after the batch in progress
    assert signal.getsignal(signum) is before


def test_a_signal_during_a_save_waits_for_the_file(tiny: DataBundle, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import mnistlib.callbacks as module

    real = module.save_checkpoint

    def interrupted_save(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        signal.raise_signal(signal.SIGINT)  # Ctrl-C pressed while the file is written
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "save_checkpoint", interrupted_save)
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=2, callbacks=[cb.SaveCheckpoints(tmp_path)])
    assert h.interrupted and h.epoch == [1]  # the interrupt came once the file was complete
    assert load_checkpoint(h.best_path).epoch == 1


def test_timer_keeps_training_and_validation_seconds_apart(tiny: DataBundle) -> None:
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=2, callbacks=[cb.Timer()])
    assert len(h.train_seconds) == len(h.val_seconds) == 2
    assert all(s > 0 for s in h.train_seconds + h.val_seconds)


def test_lr_schedule_steps_per_batch_epoch_or_validation_loss(tiny: DataBundle, monkeypatch) -> None:
    model, opt = _setup()
    step = cb.LRSchedule(torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), "epoch")
    assert fit(model, tiny, opt, epochs=3, callbacks=[step]).lr == pytest.approx([1e-3, 5e-4, 2.5e-4])
    model, opt = _setup()
    cycle = cb.LRSchedule(torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=2 * len(tiny.train)), "batch")
    h = fit(model, tiny, opt, epochs=2, callbacks=[cycle])
    assert cycle.scheduler.last_epoch == 2 * len(tiny.train) and h.lr[0] < h.lr[1]
    _scripted_val(monkeypatch, [0.5, 0.6, 0.7, 0.8])
    model, opt = _setup()
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    h = fit(model, tiny, opt, epochs=4, callbacks=[cb.LRSchedule(plateau, "val_loss")])
    assert h.lr == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4])
    with pytest.raises(ValueError, match="every"):
        cb.LRSchedule(plateau, "weekly")


def test_print_and_progress_callbacks(tiny: DataBundle, capsys: pytest.CaptureFixture) -> None:
    model, opt = _setup()
    fit(model, tiny, opt, epochs=1, callbacks=[cb.Timer(), cb.ProgressBar(), cb.PrintEpochs()])
    out = capsys.readouterr().out
    assert "epoch  1/1  train loss" in out and "★ best" in out


def test_callback_states_have_unique_names_and_come_back() -> None:
    a, b = cb.EarlyStopping(2), cb.EarlyStopping(4)
    a.best, b.best = 0.5, 0.7
    states = cb.callback_states([a, cb.Timer(), b])
    assert set(states) == {"EarlyStopping", "EarlyStopping#2"}
    fresh_a, fresh_b = cb.EarlyStopping(2), cb.EarlyStopping(4)
    cb.restore_callbacks([fresh_a, cb.Timer(), fresh_b], states)
    assert (fresh_a.best, fresh_b.best) == (0.5, 0.7)


def test_train_one_epoch_is_the_loop(tiny: DataBundle) -> None:
    model, opt = _setup("one-by-one")
    calls = []
    loss, acc = train_one_epoch(model, tiny.train, opt, torch.nn.CrossEntropyLoss(), "cpu",
                                lambda loss, acc: calls.append(loss))
    assert 0 < loss < 5 and 0 <= acc <= 1 and model.training and len(calls) == len(tiny.train)
    assert calls[-1] == pytest.approx(loss)


def test_validation_is_skipped_when_the_data_has_none(data_root: Path) -> None:
    data = get_data(batch_size=64, subset=256, val_size=0, seed=0, root=data_root)
    model, opt = _setup()
    h = fit(model, data, opt, epochs=1)
    assert len(h) == 1 and math.isnan(h.val_acc[0]) and h.best_val_acc is None and h.best_epoch is None


def test_print_epochs_names_checkpoints_without_machine_paths(tiny: DataBundle, tmp_path: Path, capsys,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path / "ckpt"))
    model, opt = _setup()
    h = fit(model, tiny, opt, epochs=1, callbacks=[cb.SaveCheckpoints(), cb.PrintEpochs()])
    out = capsys.readouterr().out
    assert f"best checkpoint: {h.best_path.name} (in checkpoint_dir())" in out and str(tmp_path) not in out
    elsewhere = tmp_path / "elsewhere"
    h = fit(model, tiny, opt, epochs=1, callbacks=[cb.SaveCheckpoints(elsewhere), cb.PrintEpochs()])
    assert f"final checkpoint: {h.final_path}\n" in capsys.readouterr().out  # outside it: the whole path


def _linear() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """No dropout and no BatchNorm: a batch's loss depends on the weights only."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def test_lr_finder_raises_the_rate_every_batch_and_stops_after_num_it(tiny: DataBundle) -> None:
    used = []

    class Rate(cb.Callback):
        order = 0  # before the finder sets the next batch's rate

        def after_batch(self, state) -> None:  # noqa: ANN001
            used.append(state.optimizer.param_groups[0]["lr"])

    model, opt = _linear()
    finder = cb.LRFinder(start_lr=1e-5, end_lr=1e-1, num_it=12)
    tiny.train.epoch = 0  # the loader shuffles by epoch number: the same first batch below and in fit
    x, y = next(iter(tiny.train))
    tiny.train.epoch = 0
    first_loss = torch.nn.functional.cross_entropy(model(x), y).item()
    h = fit(model, tiny, opt, epochs=3, callbacks=[finder, Rate()])  # 8 batches an epoch: the finder needs 2
    assert h.stop_reason.startswith("12 batches, up to") and len(h) == 1 and len(finder.lrs) == 12
    assert used == finder.lrs and finder.lrs[0] == 1e-5 and finder.rate(12) == pytest.approx(1e-1)
    assert all(b / a == pytest.approx(10 ** (4 / 12)) for a, b in zip(finder.lrs, finder.lrs[1:], strict=False))
    assert finder.losses[0] == pytest.approx(first_loss)  # a running mean, bias-corrected: the first batch's loss
    assert finder.suggestion() == pytest.approx(finder.min_lr / 10)
    assert finder.losses[finder.lrs.index(finder.min_lr)] == min(finder.losses)


def test_lr_finder_stops_when_the_loss_diverges_and_puts_everything_back(tiny: DataBundle) -> None:
    model, opt = _linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finder = cb.LRFinder(start_lr=1e-4, end_lr=1e6, num_it=100)
    h = fit(model, tiny, opt, epochs=13, callbacks=[finder])
    assert "diverged" in h.stop_reason and len(finder.lrs) < 100
    assert finder.losses[-1] > 4 * min(finder.losses) or not math.isfinite(finder.losses[-1])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the weights are back
    assert opt.param_groups[0]["lr"] == 1e-3 and not opt.state  # and the optimizer as it was
    again = fit(model, tiny, opt, epochs=1)  # an ordinary run afterwards: cross-entropy, the rate it was given
    assert again.lr == [1e-3] and again.train_loss[0] < 2.5
    with pytest.raises(ValueError, match="start_lr"):
        cb.LRFinder(start_lr=1.0, end_lr=1e-3)


def test_history_plot_stars_the_best_accuracy_without_claiming_a_save():
    """The star marks the best validation accuracy; runs with save=False (lesson 03's demo) saved nothing."""
    from mnistlib.plots import plot_history

    history = History()
    history.add_epoch(1, 0.5, 0.8, 0.4, 0.85, 1e-3)
    history.add_epoch(2, 0.3, 0.9, 0.3, 0.90, 1e-3)
    fig = plot_history(history)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "best validation accuracy" in labels and not any("saved" in label for label in labels)
    matplotlib.pyplot.close(fig)
