"""fit and friends on a tiny slice of MNIST: early stopping, Ctrl-C, resume, reproducibility."""

from __future__ import annotations

import dataclasses
import math
import signal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from mnistlib import training
from mnistlib.checkpoints import latest_checkpoint, load_checkpoint
from mnistlib.data import DataBundle, get_data
from mnistlib.models import get_model
from mnistlib.training import History, fit, pick_device, quick_model, train_one_epoch

QUIET = {"progress": False, "verbose": False, "live_plot": False, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny(data_root: Path) -> DataBundle:
    """512 training images, 500 validation images: a run of one epoch takes well under a second."""
    return get_data(batch_size=64, subset=512, val_size=500, seed=0, root=data_root)


@pytest.fixture(autouse=True)
def _folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))


def _scripted_val(monkeypatch: pytest.MonkeyPatch, accs: list[float]) -> None:
    """Make validation report ``accs`` epoch after epoch (the loop itself still trains)."""
    it = iter(accs)
    monkeypatch.setattr(training, "evaluate", lambda model, loader, device: (1.0 - (a := next(it)), a))


def test_history_shape_and_checkpoints(tiny: DataBundle, tmp_path: Path) -> None:
    h = fit("classic", tiny, epochs=2, seed=0, **QUIET)
    assert isinstance(h, History) and len(h) == 2
    assert h.epoch == [1, 2] and h["val_acc"] is h.val_acc
    assert set(h.to_dict()) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert all(0 <= a <= 1 for a in h.train_acc + h.val_acc) and all(s > 0 for s in h.seconds)
    assert h.lr == [1e-3, 1e-3]
    assert h.best_path.name.startswith("best_model_") and h.final_path.name.startswith("final_model_")
    assert h.best_path.name[len("best_model_"):] == h.final_path.name[len("final_model_"):]  # one stamp per run
    final = load_checkpoint(h.final_path)
    assert final.epoch == 2 and final.history["train_loss"] == h.train_loss
    assert final.hparams["batch_size"] == 64 and final.hparams["optimizer"] == "adam"
    assert final.mean == pytest.approx(tiny.mean)
    assert latest_checkpoint() == h.best_path
    assert not list((tmp_path / "ckpt").glob(".*"))  # no lock or temporary files left


def test_early_stopping_at_the_first_epoch_reaching_the_target(
    tiny: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_val(monkeypatch, [0.50, 0.80, 0.93, 0.97, 0.99])
    h = fit("one-by-one", tiny, epochs=5, target_accuracy=0.9, **QUIET)
    assert h.epoch == [1, 2, 3] and h.stopped_early and not h.interrupted
    assert h.val_acc == [0.50, 0.80, 0.93]
    assert load_checkpoint(h.best_path).epoch == 3
    assert load_checkpoint(h.final_path).history["val_acc"] == [0.50, 0.80, 0.93]


def test_target_reached_on_the_last_epoch_is_not_early(tiny: DataBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_val(monkeypatch, [0.5, 0.95])
    h = fit("one-by-one", tiny, epochs=2, target_accuracy=0.9, **QUIET)
    assert len(h) == 2 and not h.stopped_early


def test_bad_target_is_refused(tiny: DataBundle) -> None:
    with pytest.raises(ValueError, match="fraction"):
        fit("one-by-one", tiny, epochs=1, target_accuracy=99, **QUIET)


def test_label_smoothing_changes_the_loss_and_is_recorded(tiny: DataBundle) -> None:
    plain = fit("classic", tiny, epochs=1, seed=7, save_checkpoints=False, **QUIET)
    smooth = fit("classic", tiny, epochs=1, seed=7, label_smoothing=0.3, **QUIET)
    assert smooth.train_loss[0] > plain.train_loss[0]  # smoothed targets never let the loss reach 0
    assert load_checkpoint(smooth.final_path).hparams["label_smoothing"] == 0.3
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            fit("classic", tiny, epochs=1, label_smoothing=bad, **QUIET)


def test_a_custom_loss_replaces_cross_entropy_for_training_only(tiny: DataBundle) -> None:
    """``loss_fn`` is what training minimises; validation still reports cross-entropy, and the run records it."""
    calls = []

    def halved_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append(len(labels))
        return 0.5 * torch.nn.functional.cross_entropy(logits, labels)

    same = fit("classic", tiny, epochs=1, seed=7, loss_fn=torch.nn.functional.cross_entropy, save_checkpoints=False,
               **QUIET)
    plain = fit("classic", tiny, epochs=1, seed=7, save_checkpoints=False, **QUIET)
    assert same.to_dict() | {"seconds": 0} == plain.to_dict() | {"seconds": 0}  # the default, given by hand
    model = get_model("classic")
    halved = fit(model, tiny, epochs=1, seed=7, loss_fn=halved_cross_entropy, model_name="classic", **QUIET)
    assert sum(calls) == 512  # one call per training batch, never on validation
    assert halved.val_loss[0] == pytest.approx(training.evaluate(model, tiny.val)[0])
    assert load_checkpoint(halved.final_path).hparams["loss_fn"] == "halved_cross_entropy"
    with pytest.raises(ValueError, match="label_smoothing or loss_fn"):
        fit("classic", tiny, epochs=1, label_smoothing=0.1, loss_fn=halved_cross_entropy, **QUIET)


def test_training_without_a_validation_split(data_root: Path) -> None:
    data = get_data(batch_size=64, subset=256, val_size=0, seed=0, root=data_root)
    assert len(data.val) == 0
    h = fit("classic", data, epochs=2, **QUIET)
    assert len(h) == 2 and all(math.isnan(a) for a in h.val_acc)
    assert h.best_path is None and load_checkpoint(h.final_path).epoch == 2
    with pytest.raises(ValueError, match="val_size=0"):
        fit("classic", data, epochs=1, target_accuracy=0.9, **QUIET)
    with pytest.raises(ValueError, match="val_size=0"):
        fit("classic", data, epochs=1, scheduler="plateau", **QUIET)


def test_same_seed_same_first_epoch_loss(tiny: DataBundle) -> None:
    a = fit("classic", tiny, epochs=1, seed=7, save_checkpoints=False, **QUIET)
    b = fit("classic", tiny, epochs=1, seed=7, save_checkpoints=False, **QUIET)
    c = fit("classic", tiny, epochs=1, seed=8, save_checkpoints=False, **QUIET)
    assert a.train_loss[0] == b.train_loss[0] and a.val_loss == b.val_loss
    assert c.train_loss[0] != a.train_loss[0]


def test_ctrl_c_returns_completed_epochs_and_keeps_the_best(tiny: DataBundle) -> None:
    calls = {"n": 0}

    def interrupt_in_epoch_two(loss: float, acc: float) -> None:
        calls["n"] += 1
        if calls["n"] == len(tiny.train) + 3:
            raise KeyboardInterrupt

    h = fit("one-by-one", tiny, epochs=3, on_batch=interrupt_in_epoch_two, **QUIET)
    assert h.interrupted and h.epoch == [1] and h.final_path is None
    assert load_checkpoint(h.best_path).epoch == 1


def test_sigint_stops_after_the_current_batch(tiny: DataBundle) -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: list[float] = []

    def press_ctrl_c_once(loss: float, acc: float) -> None:
        seen.append(loss)
        if len(seen) == 2:
            signal.raise_signal(signal.SIGINT)  # the handler only asks to stop…

    h = fit("one-by-one", tiny, epochs=2, on_batch=press_ctrl_c_once, **QUIET)
    assert len(seen) == 2  # …after the batch in progress
    assert h.interrupted and len(h) == 0 and h.best_path is None
    assert signal.getsignal(signal.SIGINT) is before


def test_resume_continues_epochs_history_and_the_same_run(tiny: DataBundle) -> None:
    straight = fit("classic", tiny, epochs=2, seed=3, scheduler="step", **QUIET)
    first = fit("classic", tiny, epochs=1, seed=3, scheduler="step", **QUIET)
    resumed = fit(None, tiny, epochs=1, seed=3, scheduler="step", resume=first.final_path, **QUIET)
    assert resumed.epoch == [1, 2]
    assert resumed.train_loss[0] == first.train_loss[0]
    assert resumed.lr == pytest.approx([1e-3, 7e-4])
    # weights, Adam's moments, the schedule, the shuffles and dropout all continue: the same numbers
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-5)
    assert resumed.val_acc == pytest.approx(straight.val_acc, abs=1e-9)
    ckpt = load_checkpoint(resumed.final_path)
    assert ckpt.epoch == 2 and ckpt.hparams["epochs"] == 2


@pytest.mark.parametrize("scheduler", ["plateau", "onecycle"])
def test_schedulers_run_save_and_resume(tiny: DataBundle, scheduler: str) -> None:
    h = fit("one-by-one", tiny, epochs=1, optimizer="sgd", lr=0.05, scheduler=scheduler, **QUIET)
    again = fit(None, tiny, epochs=1, optimizer="sgd", lr=0.05, scheduler=scheduler, resume=h.final_path, **QUIET)
    assert again.epoch == [1, 2]
    assert load_checkpoint(again.final_path).scheduler_state is not None


def test_val_every_skips_validation_but_not_the_last_epoch(tiny: DataBundle) -> None:
    h = fit("one-by-one", tiny, epochs=3, val_every=2, save_checkpoints=False, **QUIET)
    assert not math.isnan(h.val_acc[1]) and not math.isnan(h.val_acc[2]) and math.isnan(h.val_acc[0])


def test_unknown_names_are_refused(tiny: DataBundle) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        fit("one-by-one", tiny, epochs=1, optimizer="rmsprop", **QUIET)
    with pytest.raises(ValueError, match="scheduler"):
        fit("one-by-one", tiny, epochs=1, scheduler="cosine", **QUIET)


def test_plain_module_needs_a_name_to_save(tiny: DataBundle) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(ValueError, match="model_name"):
        fit(net, tiny, epochs=1, **QUIET)
    h = fit(net, tiny, epochs=1, save_checkpoints=False, **QUIET)
    assert len(h) == 1


def test_train_one_epoch_is_the_loop(tiny: DataBundle) -> None:
    torch.manual_seed(0)
    model = get_model("one-by-one")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, acc = train_one_epoch(model, tiny.train, opt, torch.nn.CrossEntropyLoss(), "cpu")
    assert 0 < loss < 5 and 0 <= acc <= 1 and model.training


def test_pick_device() -> None:
    assert pick_device("cpu", verbose=False) == torch.device("cpu")
    assert pick_device(verbose=False).type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pick_device("cuda", verbose=False)


def test_figures(tiny: DataBundle, tmp_path: Path) -> None:
    h = fit("one-by-one", tiny, epochs=1, target_accuracy=0.99, save_checkpoints=False, **QUIET)
    fig = training.plot_history(h)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert training.plot_history(h.to_dict()).axes[0].get_title() == "Loss"
    out = training.save_figure(fig, tmp_path / "figs" / "training_history.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    grid = training.plot_predictions(get_model("one-by-one"), tiny.test, n=12, ncols=6)
    assert len([ax for ax in grid.axes if ax.get_title()]) == 12


def test_quick_model_trains_once_then_reuses(tiny: DataBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLIB_QUICK", "1")
    monkeypatch.setitem(training.QUICK_MODEL, "quick_subset", 256)
    folder = tmp_path / "quick"
    folder.mkdir()
    (folder / "best_model_29990101_000000.pth").write_bytes(b"junk")  # newest, but unreadable: skipped
    first = quick_model(folder=folder, verbose=False)
    assert first.name == "batchnorm" and first.epoch == 1 and not first.model.training

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("quick_model trained although a checkpoint exists")

    monkeypatch.setattr(training, "fit", no_training)
    again = quick_model(folder=folder, verbose=False)
    assert again.path == first.path
    with pytest.raises(AssertionError):
        quick_model("classic", folder=folder, verbose=False)  # no checkpoint of that model: would train


@pytest.fixture(scope="module")
def tiny_augmented(data_root: Path) -> DataBundle:
    """The tiny split with the record recipe's augmentation: BatchNorm trains on rotated, shifted, zoomed images."""
    return get_data(batch_size=64, augment="rotate10-shift2-scale10", subset=512, val_size=500, seed=0,
                    root=data_root)


def test_without_augmentation_gives_the_clean_images_in_order(tiny_augmented: DataBundle) -> None:
    train = tiny_augmented.train
    clean = train.without_augmentation(batch_size=100)
    x, y = next(iter(clean))
    assert x.shape == (100, 1, 28, 28) and torch.equal(y, train.labels[:100])
    expected = (train.images[:100].unsqueeze(1).float() / 255 - tiny_augmented.mean) / tiny_augmented.std
    assert torch.allclose(x, expected)
    assert len(clean) == 6 and clean.augment.is_identity and not train.augment.is_identity


def test_recalibrate_batchnorm_sets_exact_statistics_of_the_clean_images(tiny_augmented: DataBundle) -> None:
    model = get_model("record", widths=(4, 8), pool_after=(0,))
    fit(model, tiny_augmented, epochs=1, lr=0.05, optimizer="sgd", save_checkpoints=False, **QUIET)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    clean = tiny_augmented.train.without_augmentation()
    conv, bn = model.features[0], model.features[1]
    with torch.no_grad():
        out = torch.cat([conv(x) for x, _ in clean])  # what the first BatchNorm sees, image by image
    mean, var = out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=True)
    assert not torch.allclose(bn.running_mean, mean, atol=1e-4)  # training left augmented-batch statistics
    assert training.recalibrate_batchnorm(model, clean) is model
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, rtol=1e-3)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # the weights are untouched
    with pytest.raises(ValueError, match="no BatchNorm"):
        training.recalibrate_batchnorm(get_model("classic"), clean)


def test_fit_recalibrate_bn_scores_and_saves_the_recalibrated_model(tiny_augmented: DataBundle) -> None:
    kwargs = dict(epochs=2, lr=0.05, optimizer="sgd", seed=3, **QUIET)

    def small_record_net() -> torch.nn.Module:
        torch.manual_seed(3)  # both runs start from the same weights
        return get_model("record", widths=(4, 8), pool_after=(0,))

    plain_model, recal_model = small_record_net(), small_record_net()
    plain = fit(plain_model, tiny_augmented, save_checkpoints=False, **kwargs)
    recal = fit(recal_model, tiny_augmented, recalibrate_bn=True, model_name="record", **kwargs)
    assert recal.val_acc[0] == plain.val_acc[0]  # only the last epoch is recalibrated
    training.recalibrate_batchnorm(plain_model, tiny_augmented.train.without_augmentation())
    assert recal.val_loss[-1] == pytest.approx(training.evaluate(plain_model, tiny_augmented.val)[0])
    saved = load_checkpoint(recal.final_path)
    assert saved.hparams["recalibrate_bn"] is True
    assert torch.allclose(saved.model.features[1].running_mean, plain_model.features[1].running_mean)
    with pytest.raises(ValueError, match="no BatchNorm"):
        fit("classic", tiny_augmented, epochs=1, recalibrate_bn=True, **QUIET)
    batches = dataclasses.replace(tiny_augmented, train=[next(iter(tiny_augmented.train.without_augmentation()))])
    with pytest.raises(ValueError, match="in-memory data"):  # a plain iterable cannot drop its augmentation
        fit(small_record_net(), batches, epochs=1, recalibrate_bn=True, save_checkpoints=False, **QUIET)
