"""mnistlib.fast: the fast and record models, their recipes, speed settings, and the benchmark script."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlib import fast
from mnistlib.fast import (
    FAST_RECIPES,
    ChannelsLast,
    ClassicBN,
    RecordNet,
    TimedRun,
    get_fast_recipe,
    set_threads,
    threads,
    to_channels_last,
)
from mnistlib.models import count_parameters, get_model, list_models

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_fast_models_are_registered() -> None:
    assert {"classic-bn", "record"} <= set(list_models())
    for recipe in FAST_RECIPES.values():
        model = get_model(recipe.model, **recipe.model_options)
        assert model.registry_name == recipe.model
    assert isinstance(get_model("classic-bn"), ClassicBN)
    assert isinstance(get_model("record"), RecordNet)


@pytest.mark.parametrize("n", [1, 7])
def test_record_model_is_small_and_maps_to_ten_logits(n: int) -> None:
    model = get_model("record", **FAST_RECIPES["record"].model_options)
    assert count_parameters(model) < 20_000
    for mode in (model.train, model.eval):
        mode()
        assert model(torch.randn(n, 1, 28, 28)).shape == (n, 10)


def test_separable_record_net_spends_its_parameters_on_width() -> None:
    """``separable=True``: after the first conv, a 3×3 filter per channel then a 1×1 mix — 9·c + c·w weights."""
    widths = (16, 32, 32, 48, 64, 64, 64)
    model = get_model("record", widths=widths, pool_after=(0, 3), separable=True)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * (len(widths) - 1)
    assert convs[0].groups == 1 and all(c.groups == c.in_channels for c in convs[1::2])
    assert all(c.kernel_size == (1, 1) for c in convs[2::2])
    weights = 9 * widths[0] + sum(9 * c + c * w for c, w in zip(widths, widths[1:], strict=False))
    batchnorm = 2 * (widths[0] + sum(c + w for c, w in zip(widths, widths[1:], strict=False)))
    assert count_parameters(model) == weights + batchnorm + 64 * 10 + 10 == 18_586
    assert count_parameters(model) < 20_000
    model.eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    plain = get_model("record", widths=widths, pool_after=(0, 3))
    assert count_parameters(plain) > 5 * count_parameters(model)  # the same widths with full 3×3 convs


@pytest.mark.parametrize("options", [{}, {"c1": 16, "c2": 32, "hidden": 128}, {"kernel2": 3}])
def test_classic_bn_shapes(options: dict) -> None:
    model = get_model("classic-bn", **options)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.features)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="c1"):
        ClassicBN(c1=0)
    with pytest.raises(ValueError, match="widths"):
        RecordNet(widths=())


def test_channels_last_step_matches_contiguous() -> None:
    """A training step on the same batch: channels-last gives the same loss and gradients (to rounding)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for name in ("classic-bn", "record", "digit-recognizer"):
        torch.manual_seed(1)
        a = get_model(name)
        b = get_model(name)
        b.load_state_dict(a.state_dict())
        to_channels_last(b)
        for model in (a, b):  # BatchNorm uses batch statistics; dropout off so both see the same net
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.eval()
        losses = []
        for model, batch in ((a, x), (b, x.contiguous(memory_format=torch.channels_last))):
            loss = nn.functional.cross_entropy(model(batch), y)
            loss.backward()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad.contiguous(), rtol=1e-3, atol=1e-5)


def test_channels_last_loader_wraps_batches() -> None:
    batches = [(torch.randn(4, 1, 28, 28), torch.arange(4))]
    wrapped = ChannelsLast(batches)
    assert len(wrapped) == 1
    (x, y), = list(wrapped)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, torch.arange(4))


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    previous = set_threads(None)
    assert previous == torch.get_num_threads()
    with pytest.raises(ValueError):
        set_threads(0)


def test_recipes_fit_the_training_api() -> None:
    training = pytest.importorskip("mnistlib.training")
    accepted = set(inspect.signature(training.fit).parameters)
    for recipe in FAST_RECIPES.values():
        kwargs = recipe.fit_kwargs()
        assert set(kwargs) <= accepted
        assert kwargs["optimizer_options"] == recipe.optimizer_options
        assert recipe.model in list_models()
    assert get_fast_recipe("fast") is FAST_RECIPES["fast"]
    with pytest.raises(KeyError, match="known"):
        get_fast_recipe("nope")


def test_recipe_build_applies_channels_last() -> None:
    for recipe in FAST_RECIPES.values():
        model = recipe.build()
        assert model.registry_name == recipe.model
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == recipe.channels_last


def test_timed_run_arithmetic() -> None:
    run = TimedRun(train_seconds=[2.0, 3.0, 4.0], eval_seconds=[1.0] * 3, accuracy=[0.97, 0.991, 0.995])
    assert run.total_train_seconds == 9.0
    assert run.seconds_to(0.99) == 5.0 and run.epochs_to(0.99) == 2
    assert run.seconds_to(0.999) is None and run.epochs_to(0.999) is None


def test_train_timed_runs_the_series_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    train = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    run = fast.train_timed(get_model("classic-bn"), train, train, epochs=2, lr=1e-2, scheduler="onecycle",
                           scheduler_options={"cycle_momentum": False}, optimizer_options={"betas": (0.7, 0.9)})
    assert len(run.train_seconds) == len(run.accuracy) == len(run.eval_seconds) == 2
    assert all(0 <= a <= 1 for a in run.accuracy)
    assert run.train_loss[-1] < run.train_loss[0]


def test_speed_helpers_return_rates() -> None:
    loader = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
    assert fast.images_per_second(get_model("classic-bn"), loader, steps=2, warmup=1) > 0
    assert fast.inference_speed(get_model("record"), 4, min_seconds=0.0, max_batches=10) > 0


def run_benchmark(data_root: Path, *args: str) -> subprocess.CompletedProcess:
    """``benchmarks/benchmark.py --smoke --threads 1 ARGS`` in a fresh process; fails the test if it fails."""
    env = dict(os.environ, MNISTLIB_DATA=str(data_root), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "benchmark.py"), "--smoke", "--threads", "1", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_benchmark_smoke_runs(data_root: Path) -> None:
    """``benchmarks/benchmark.py --smoke`` (the seconds-long version of ``--quick``) runs to the end."""
    proc = run_benchmark(data_root)
    for heading in ("Training throughput", "Time to 99.0%", "Inference", "Measured on"):
        assert heading in proc.stdout


def test_benchmark_record_refit_on_all_images_has_no_validation_column(data_root: Path) -> None:
    """``--record --record-val-size 0`` trains without a validation split and says so in its table."""
    proc = run_benchmark(data_root, "--record", "--seeds", "0", "1", "--record-val-size", "0")
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2 and all(row.split("|")[6].strip() == "—" for row in rows)
    assert "Test accuracy over seeds 0, 1" in proc.stdout


def _record_search() -> object:
    """benchmarks/record_search.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("record_search", REPO / "benchmarks" / "record_search.py")
    search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search)
    return search


def test_record_search_reports_validation_and_never_reads_the_test_set(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``benchmarks/record_search.py`` prints one validation row per variant; touching the test split fails."""
    import dataclasses

    search = _record_search()

    class Forbidden:
        def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            raise AssertionError("the search read the test set")

        def __len__(self) -> int:
            raise AssertionError("the search read the test set")

    real, real_fit, fit_calls = search.get_data, search.fit, []

    def recording_fit(*args: object, **kwargs: object) -> object:
        fit_calls.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    monkeypatch.setattr(search, "get_data", lambda *a, **k: dataclasses.replace(real(*a, **k), test=Forbidden()))
    monkeypatch.setattr(search, "fit", recording_fit)
    search.main(["--subset", "256", "--epochs", "1", "--widths", "4", "8", "--pool-after", "0",
                 "--scale", "0.1", "--weight-decay", "1e-3", "--recalibrate-bn", "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert out.count("after re-estimating BatchNorm statistics") == 2 and out.count("validation") == 4
    row, recal_row = out.strip().splitlines()[-2:]
    assert recal_row.startswith("| … the same runs, BatchNorm statistics re-estimated")
    params = count_parameters(get_model("record", widths=(4, 8), pool_after=(0,)))
    assert row.startswith("| widths [4, 8]") and f"| {params:,} |" in row and "scale=0.1" in row
    assert "weight decay 0.001" in row
    assert [call["optimizer_options"]["weight_decay"] for call in fit_calls] == [1e-3, 1e-3]
    assert FAST_RECIPES["record"].optimizer_options["weight_decay"] == 5e-4  # the recipe itself untouched


def test_distillation_loss_is_cross_entropy_when_student_agrees_with_teachers() -> None:
    """With the teachers' soft targets equal to the student's own, the KL term is 0: only (1 − α)·CE is left."""
    search = _record_search()
    student = get_model("record", widths=(4, 8), pool_after=(0,)).eval()
    wrapped = search.Distilled(student, [student], temperature=4.0)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    wrapped.train()
    student.eval()  # so the student's forward matches the teacher's exactly
    logits = wrapped(x)
    assert torch.allclose(wrapped.soft_targets, torch.softmax(logits / 4.0, dim=1), atol=1e-6)
    loss = search.distillation_loss(wrapped, alpha=0.3)(logits, y)
    assert torch.allclose(loss, 0.7 * nn.functional.cross_entropy(logits, y), atol=1e-6)
    wrapped.soft_targets = torch.full_like(wrapped.soft_targets, 0.1)  # teachers that shrug: KL > 0
    assert search.distillation_loss(wrapped, alpha=0.3)(logits, y) > loss


def test_record_search_saves_runs_and_distils_from_them(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--save-dir`` writes loadable checkpoints; ``--teachers`` trains a student from them, teachers untouched,
    and with ``--distill-alpha 0`` the student's run is the plain run to the image."""
    from mnistlib.checkpoints import load_checkpoint

    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    search = _record_search()
    small = ["--subset", "256", "--epochs", "1", "--widths", "4", "8", "--pool-after", "0", "--seeds", "0"]
    search.main([*small, "--save-dir", str(tmp_path)])
    plain_row = capsys.readouterr().out.strip().splitlines()[-1]
    teacher = load_checkpoint(tmp_path / "seed0.pth")
    assert teacher.options == {"widths": [4, 8], "pool_after": [0]} and teacher.epoch == 1
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}

    monkeypatch.setattr(search, "load_checkpoint", lambda path: teacher)
    search.main([*small, "--teachers", str(tmp_path / "seed0.pth"), "--distill-alpha", "0"])
    out = capsys.readouterr().out
    assert "the 1 teachers' averaged prediction: validation" in out and "made by every teacher" in out
    row = out.strip().splitlines()[-1]
    assert "distilled from 1 teachers (α 0.0, T 4.0)" in row
    assert row.split("|")[3] == plain_row.split("|")[3]  # same validation accuracy: α = 0 is the plain run
    search.main([*small, "--teachers", str(tmp_path / "seed0.pth")])
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items())
    assert not teacher.model.training
    capsys.readouterr()
    search.main(["--teachers", str(tmp_path / "seed0.pth"), "--only-report-teachers"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "made by every teacher" in out[0]  # the report, and no training run
    with pytest.raises(SystemExit):
        search.main(["--only-report-teachers"])
