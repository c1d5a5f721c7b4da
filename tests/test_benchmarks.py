"""benchmarks/: the scripts run (smoke), the record search never reads the test set, the experiment-only
pieces do what they claim, results.json keeps every key, and README's tables agree with results.json."""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlib.course import results
from mnistlib.data import get_data
from mnistlib.models import count_parameters, get_model
from mnistlib.recipes import RECIPES
from mnistlib.training import fit

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))  # the scripts import their sibling modules (machine, store, experiments)

experiments = importlib.import_module("experiments")
machine = importlib.import_module("machine")
store = importlib.import_module("store")


def script(name: str) -> object:
    """A benchmark script as a module, imported afresh (its ``main(argv)`` runs it)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.fixture(autouse=True)
def _env(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture()
def results_file(tmp_path: Path) -> Path:
    """A results file that already holds another helper's key, which every script must keep."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"export": {"onnx_bytes": 123, "note": "someone else's"}}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- results.json


def test_save_result_keeps_other_keys_and_leaves_no_temporary_file(results_file: Path) -> None:
    store.save_result("throughput", {"rows": [{"x": 0.9909999823570251}]}, results_file)
    store.save_result("throughput", {"rows": [{"x": 2.0}]}, results_file)
    data = json.loads(results_file.read_text(encoding="utf-8"))
    assert data["export"] == {"onnx_bytes": 123, "note": "someone else's"}
    assert data["throughput"] == {"rows": [{"x": 2.0}]}
    assert [p.name for p in results_file.parent.iterdir()] == ["results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(results_file.stat().st_mode) == 0o666 & ~umask
    store.save_result("x", {"v": 0.9909999823570251}, results_file)
    assert results.load(results_file)["x"]["v"] == 0.991  # float noise rounded away


def test_save_result_refuses_a_file_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON object"):
        store.save_result("k", {}, path)
    assert path.read_text(encoding="utf-8") == "[1, 2]"


def test_missing_figures_say_which_script_measures_them(tmp_path: Path) -> None:
    with pytest.raises(results.ResultsMissingError, match="no results file"):
        results.load(tmp_path / "nope.json")
    with pytest.raises(results.ResultsMissingError, match=r"benchmark.py --record"):
        results.figures("record", {"export": {}})


def test_another_results_file_can_be_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed mnistlib has no checkout beside it: MNISTLIB_RESULTS points at the file."""
    (tmp_path / "r.json").write_text('{"export": {"rows": []}}')
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path / "r.json"))
    assert results.load() == {"export": {"rows": []}}
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(results.ResultsMissingError, match="MNISTLIB_RESULTS"):
        results.load()


def test_render_blocks_rewrites_only_what_is_between_the_markers() -> None:
    figures = {"inference": {"rows": [{"model": "m", "parameters": 1234, "batch_1": 10.0, "batch_1000": 2000.0}],
                             "conditions": {"command": "python benchmarks/benchmark.py", "date": "today"}}}
    text = "before\n<!-- results:inference -->\nstale\n<!-- /results:inference -->\nafter\n"
    out = results.render_blocks(text, figures)
    assert out.startswith("before\n<!-- results:inference -->\n")
    assert out.endswith("<!-- /results:inference -->\nafter\n")
    assert "stale" not in out and "| m | 1,234 | 10 | 2,000 |" in out and "`python benchmarks/benchmark.py`" in out
    assert results.render_blocks(out, figures) == out  # rendering is idempotent


def test_record_table_never_rounds_a_miss_onto_the_aim() -> None:
    rows = [{"seed": s, "parameters": 17_826, "epochs": 25, "train_seconds": 500.0, "val_acc": 0.994, "test_acc": a}
            for s, a in enumerate((0.9963, 0.9953, 0.9963))]
    entry = {"rows": rows, "train_images": 55_000, "aim": 0.996}
    text = results.table("record", {"record": entry})
    assert "mean **99.60% ± 0.06%**" in text and "Aim: a mean of at least 99.6%: not reached (99.597%)." in text
    rows[1]["test_acc"] = 0.9957
    assert ": reached (99.61%)." in results.table("record", {"record": entry})


def test_show_prints_the_table_outside_a_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {"inference": {"rows": [{"model": "m", "parameters": 1, "batch_1": 1.0, "batch_1000": 1.0}]}}
    results.show("inference", figures)
    assert capsys.readouterr().out.strip() == results.table("inference", figures).strip()


def test_time_to_99_table_reports_final_accuracy_spread_and_time_ratio() -> None:
    entry = {"rows": [
        {"title": "seed", "pipeline": "torchvision", "epochs": 10, "seeds": [0, 1], "train_seconds": [200.0, 220.0],
         "test_acc": [0.984, 0.986]},
        {"title": "fast", "pipeline": "in-memory", "epochs": 2, "seeds": [0, 1, 2], "train_seconds": [5.0, 5.5, 5.25],
         "test_acc": [0.990, 0.992, 0.988]}], "conditions": {}, "aim": {"accuracy": 0.99, "fraction": 40}}
    text = results.table("time_to_99", {"time_to_99": entry})
    fast = next(line for line in text.splitlines() if line.startswith("| fast"))
    assert "| 3 | 5.2 | 99.00% ± 0.20% | 98.80% | 1/40 |" in fast
    assert "Measured: 99.00% (reached) in 1/40 of it (reached)." in text
    entry["rows"][1]["test_acc"] = [0.989] * 3
    assert "98.90% (not reached)" in results.table("time_to_99", {"time_to_99": entry})
    assert results.spread([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5), 1.0)


def test_readme_tables_agree_with_results_json() -> None:
    """Every measured table in README.md and benchmarks/README.md is rendered from results.json: a hand edit
    of either file, or new figures not yet rendered (`python benchmarks/render.py`), fail here."""
    render = script("render")
    figures = results.load()
    for f in render.FILES:
        keys = results._BLOCK.findall(f.read_text(encoding="utf-8"))
        assert keys, f"{f.name} has no results blocks"
        assert all(key in figures for _, key, *_ in keys)
    assert render.stale() == [], "run: python benchmarks/render.py"
    for key in ("seed_recipes", "throughput", "time_to_99", "inference", "record", "record_search"):
        assert results.table(key, figures).count("\n|") >= 3  # a header, a rule and at least one row


# --------------------------------------------------------------------------- machine


def test_machine_description() -> None:
    model = RECIPES["fast"].build()
    line = machine.describe_model(model)
    assert line.startswith("classic-bn (hidden=256") and f"{count_parameters(model):,} parameters" in line
    assert "channels-last" in line and "channels-last" not in machine.describe_model(get_model("record"))
    assert machine.cpu_threads_available() >= 1 and machine.cpu_name()
    conditions = machine.Conditions("benchmark.py", ["--smoke", "--threads", "1"]).finish()
    assert conditions["command"].endswith("python benchmarks/benchmark.py --smoke --threads 1")
    assert conditions["machine"]["torch"] == torch.__version__ and conditions["minutes"] >= 0


# --------------------------------------------------------------------------- the scripts, in seconds


def test_benchmark_smoke_writes_its_three_tables(results_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = script("benchmark")
    assert bench.main(["--smoke", "--threads", "1", "--results", str(results_file)]) == 0
    out = capsys.readouterr().out
    figures = results.load(results_file)
    assert set(figures) == {"export", "throughput", "time_to_99", "inference"}
    assert figures["export"]["onnx_bytes"] == 123
    seed, fast = figures["time_to_99"]["rows"]
    assert seed["pipeline"] == "torchvision" and fast["recipe"] == "fast" and len(fast["test_acc"]) == 1
    assert figures["throughput"]["rows"][0]["step"].startswith("DigitRecognizerCNN recipe: torchvision")
    assert "benchmark.py --smoke --threads 1" in figures["inference"]["conditions"]["command"]
    for key in ("throughput", "time_to_99", "inference"):
        assert results.table(key, figures) in out


def test_benchmark_writes_to_results_json_only_when_it_measures_in_full() -> None:
    bench = script("benchmark")
    args, settings = bench.parse(["--smoke"])
    assert args.results is None and settings.epochs == 1
    args, settings = bench.parse([])
    assert args.results == results.RESULTS_PATH and settings.seeds == [0, 1, 2, 3, 4] and settings.epochs is None


def test_benchmark_record_refit_on_all_images_has_no_validation(results_file: Path) -> None:
    """``--record --record-val-size 0`` trains without a validation split and says so in its table."""
    bench = script("benchmark")
    bench.main(["--smoke", "--threads", "1", "--record", "--seeds", "0", "1", "--record-val-size", "0",
                "--results", str(results_file)])
    assert "record" not in results.load(results_file)  # a refit is not the record recipe's own figure
    entry = results.figures("record_refit", results.load(results_file))
    assert [r["seed"] for r in entry["rows"]] == [0, 1] and all(r["val_acc"] is None for r in entry["rows"])
    text = results.table("record_refit", {"record_refit": entry})
    assert "| 0 | 17,826 | 1 |" in text and "| – |" in text and "Test accuracy over 2 seeds" in text


def test_seed_recipes_smoke(results_file: Path) -> None:
    seed_recipes = script("seed_recipes")
    seed_recipes.main(["--smoke", "--quiet", "--recipes", "classic", "batchnorm", "--results", str(results_file)])
    figures = results.load(results_file)
    assert [r["recipe"] for r in figures["seed_recipes"]["rows"]] == ["classic", "batchnorm"]
    assert figures["export"]["onnx_bytes"] == 123
    assert "| the BatchNorm net | `batchnorm` | 105,962 | 1 of 1 (256 imgs) |" in results.table("seed_recipes", figures)
    assert seed_recipes.parse(["--smoke"]).results is None and seed_recipes.parse([]).results == results.RESULTS_PATH


# --------------------------------------------------------------------------- the record search


class Forbidden:
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise AssertionError("the search read the test set")

    def __len__(self) -> int:
        raise AssertionError("the search read the test set")


SMALL = ["--subset", "256", "--epochs", "1", "--widths", "4", "8", "--pool-after", "0", "--threads", "1"]


def test_record_search_reports_validation_and_never_reads_the_test_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One validation row per variant (and one after BatchNorm re-estimation); touching the test split fails."""
    import dataclasses

    search = script("record_search")
    real_data, real_train, recipes = search.get_data, search.train, []
    monkeypatch.setattr(search, "get_data", lambda *a, **k: dataclasses.replace(real_data(*a, **k), test=Forbidden()))
    monkeypatch.setattr(search, "train", lambda recipe, *a, **k: recipes.append(recipe) or real_train(recipe, *a, **k))
    search.main([*SMALL, "--scale", "0.1", "--weight-decay", "1e-3", "--label-smoothing", "0.1", "--recalibrate-bn",
                 "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert out.count("after re-estimating BatchNorm statistics") == 2 and out.count("validation") == 4
    row, recal_row = out.strip().splitlines()[-2:]
    assert recal_row.startswith("| … the same runs, BatchNorm statistics re-estimated")
    params = count_parameters(get_model("record", widths=(4, 8), pool_after=(0,)))
    assert row.startswith("| widths [4, 8]") and f"| {params:,} |" in row and "scale=0.1" in row
    assert "weight decay 0.001" in row and "label smoothing 0.1" in row
    assert [r.optimizer_options["weight_decay"] for r in recipes] == [1e-3, 1e-3]
    assert RECIPES["record"].optimizer_options["weight_decay"] == 5e-4  # the recipe itself untouched


def test_record_search_seals_the_test_split_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlib.evaluation import TestSetSealedError

    class Stop(Exception):
        pass

    def first_call(recipe: object, data: object, **settings: object) -> None:
        seen.append(data)
        raise Stop

    search, seen = script("record_search"), []
    monkeypatch.setattr(search, "train", first_call)
    with pytest.raises(Stop):
        search.main([*SMALL, "--seeds", "0"])
    with pytest.raises(TestSetSealedError):
        iter(seen[0].test)


def test_fast_search_rows_are_measured_against_the_baseline(results_file: Path) -> None:
    search = script("record_search")
    common = ["--recipe", "fast", "--subset", "256", "--epochs", "1", "--seeds", "0", "--threads", "1",
              "--results", str(results_file)]
    search.main([*common, "--baseline", "--kind", "baseline"])
    search.main([*common, "--batch-size", "64", "--kind", "length", "--change", "batch 64"])
    entry = results.figures("fast_search", results.load(results_file))
    (row,) = entry["rows"]
    assert entry["baseline"]["kind"] == "baseline" and row["change"] == "batch 64"
    assert row["delta"] == pytest.approx(row["val_acc"][0] - entry["baseline"]["val_acc"][0], abs=1e-6)
    assert "--batch-size 64" in row["command"] and "| length | batch 64 |" in results.table("fast_search",
                                                                                            results.load(results_file))
    assert results.load(results_file)["export"]["onnx_bytes"] == 123


def test_distillation_loss_is_cross_entropy_when_student_agrees_with_teachers() -> None:
    """With the teachers' soft targets equal to the student's own, the KL term is 0: only (1 − α)·CE is left."""
    student = get_model("record", widths=(4, 8), pool_after=(0,)).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    targets = experiments.TeacherTargets([(x, y)], [student], temperature=4.0)
    assert len(targets) == 1 and [b[1] for b in targets] == [y]
    logits = student(x)
    assert torch.allclose(targets.soft, torch.softmax(logits / 4.0, dim=1), atol=1e-6)
    loss = experiments.distillation_loss(targets, alpha=0.3)(logits, y)
    assert torch.allclose(loss, 0.7 * nn.functional.cross_entropy(logits, y), atol=1e-6)
    targets.soft = torch.full_like(targets.soft, 0.1)  # teachers that shrug: KL > 0
    assert experiments.distillation_loss(targets, alpha=0.3)(logits, y) > loss
    with pytest.raises(ValueError, match="teacher"):
        experiments.TeacherTargets([], [])


def test_record_search_saves_runs_and_distils_from_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--save-dir`` writes loadable checkpoints; ``--teachers`` trains a student from them, teachers untouched,
    and with ``--distill-alpha 0`` the student's run is the plain run to the image."""
    from mnistlib.checkpoints import load_checkpoint

    search = script("record_search")
    small = [*SMALL, "--seeds", "0"]
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


def test_separable_record_net_spends_its_parameters_on_width() -> None:
    """After the first conv, a 3×3 filter per channel then a 1×1 mix — 9·c + c·w weights; registered on demand."""
    widths = (16, 32, 32, 48, 64, 64, 64)
    model = experiments.SeparableRecordNet(widths, pool_after=(0, 3))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * (len(widths) - 1)
    assert convs[0].groups == 1 and all(c.groups == c.in_channels for c in convs[1::2])
    assert all(c.kernel_size == (1, 1) for c in convs[2::2])
    weights = 9 * widths[0] + sum(9 * c + c * w for c, w in zip(widths, widths[1:], strict=False))
    batchnorm = 2 * (widths[0] + sum(c + w for c, w in zip(widths, widths[1:], strict=False)))
    assert count_parameters(model) == weights + batchnorm + 64 * 10 + 10 == 18_586
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(get_model("record", widths=widths, pool_after=(0, 3))) > 5 * count_parameters(model)
    name = experiments.register_separable()
    assert get_model(name, widths=widths).registry_name == "record-separable"


def test_recalibrate_batchnorm_callback_pairs_before_and_after(data_root: Path) -> None:
    data = get_data(64, "rotate10-shift2", subset=256, val_size=500, root=data_root)
    model = get_model("record", widths=(4, 8), pool_after=(0,))
    recal = experiments.RecalibrateBatchNorm(experiments.clean_loader(data.train))
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    history = fit(model, data, torch.optim.SGD(model.parameters(), lr=0.05), epochs=1, callbacks=[recal])
    running = bn.running_mean.clone()
    assert recal.before == history.val_acc[-1] and recal.after is not None
    torch.optim.swa_utils.update_bn(experiments.clean_loader(data.train), model)
    torch.testing.assert_close(bn.running_mean, running)  # the statistics are the clean images' own
    with pytest.raises(ValueError, match="no BatchNorm"):
        fit(get_model("classic"), data, torch.optim.SGD(get_model("classic").parameters(), lr=0.1), epochs=1,
            callbacks=[recal])
