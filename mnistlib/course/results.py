"""The series' measured figures: ``benchmarks/results.json``, read and shown as markdown tables.

The benchmark scripts in ``benchmarks/`` write every figure the series quotes into that one file,
with the command, machine and date that produced it. Lessons and README show tables rendered from
it (``show("time_to_99")``), so no number is ever typed twice — or typed at all.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from mnistlib.compare import Row, recipe_table
from mnistlib.config import REPO_ROOT
from mnistlib.tables import markdown_table

__all__ = ["RESULTS_PATH", "RESULTS_ENV", "ResultsMissingError", "load", "figures", "table", "show", "spread",
           "render_blocks"]

#: Where the benchmarks write their figures: ``benchmarks/results.json`` of the checkout mnistlib runs from.
RESULTS_PATH = REPO_ROOT / "benchmarks" / "results.json"
#: Another results file (an installed mnistlib has no checkout beside it): ``MNISTLIB_RESULTS=path``.
RESULTS_ENV = "MNISTLIB_RESULTS"

#: The script (and options) that measures each key, for error messages.
SOURCES = {"seed_recipes": "seed_recipes.py", "throughput": "benchmark.py", "time_to_99": "benchmark.py",
           "inference": "benchmark.py", "record": "benchmark.py --record",
           "record_refit": "benchmark.py --record --record-val-size 0", "record_search": "record_search.py",
           "fast_search": "record_search.py --recipe fast"}


class ResultsMissingError(LookupError):
    """The results file, or the figures asked for, are not there; the message says what measures them."""


def load(path: str | Path | None = None) -> dict:
    """Every measured figure, as the dict stored in ``results.json``."""
    path = Path(path or os.environ.get(RESULTS_ENV) or RESULTS_PATH)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsMissingError(f"no results file at {path}: the scripts in a checkout's benchmarks/ write it "
                                  f"(set {RESULTS_ENV} to read another file)") from None


def figures(key: str, results: dict | None = None) -> dict:
    """The figures stored under ``key`` (``"seed_recipes"``, ``"time_to_99"``, …)."""
    results = load() if results is None else results
    if key not in results:
        source = SOURCES.get(key, "a script in benchmarks/")
        raise ResultsMissingError(f"no {key!r} figures in results.json (known: {', '.join(results)}); "
                                  f"`python benchmarks/{source}` measures them")
    return results[key]


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, sample standard deviation, minimum) of ``values`` (std 0 for a single value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std, min(values)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def _rows(header: Sequence[str], align: str, rows: list[list[str]]) -> list[str]:
    return markdown_table(header, rows, align).splitlines()


def _seed_recipes(entry: dict) -> list[str]:
    return [recipe_table([Row(**row) for row in entry["rows"]])]


def _throughput(entry: dict) -> list[str]:
    base, images = entry["rows"][0]["images_per_s"], entry["epoch_images"]
    rows = [[f"{r['step']} {r.get('note', '')}".strip(), f"{r['images_per_s']:,.0f}",
             f"{images / r['images_per_s']:.1f}", f"{r['images_per_s'] / base:.1f}×"] for r in entry["rows"]]
    return _rows(["step", "images/s", f"s / epoch ({images:,})", "× recipe pipeline"], "lrrr", rows)


def _time_to_99(entry: dict) -> list[str]:
    rows, base = [], entry["rows"][0]
    for r in entry["rows"]:
        mean_s = statistics.mean(r["train_seconds"])
        acc, std, low = spread(r["test_acc"])
        rows.append([r["title"], r["pipeline"], str(r["epochs"]), str(len(r["seeds"])), f"{mean_s:.1f}",
                     f"{acc:.2%} ± {std:.2%}", f"{low:.2%}",
                     f"1/{statistics.mean(base['train_seconds']) / mean_s:.0f}" if r is not base else "1"])
    header = ["recipe", "data pipeline", "epochs (fixed)", "seeds", "training s per run (mean)",
              "final test acc (mean ± std)", "min", "training time vs the first row"]
    return _rows(header, "lllrrrrr", rows) + _aim(entry)


def _aim(entry: dict) -> list[str]:
    """One line: did the last row reach the aim (mean accuracy, fraction of the first row's time)?"""
    aim = entry.get("aim")
    if not aim or len(entry["rows"]) < 2:
        return []
    base, last = entry["rows"][0], entry["rows"][-1]
    acc = statistics.mean(last["test_acc"])
    share = statistics.mean(base["train_seconds"]) / statistics.mean(last["train_seconds"])
    fraction = f"1/{share:.0f}" if round(share) != aim["fraction"] or share == aim["fraction"] else f"1/{share:.1f}"
    return ["", f"Aim: a mean of at least {aim['accuracy']:.1%} in at most 1/{aim['fraction']} of the first row's "
                f"training time. Measured: {_near(acc, aim['accuracy'])} ({_verdict(acc >= aim['accuracy'])}) in "
                f"{fraction} of it ({_verdict(share >= aim['fraction'])})."]


def _inference(entry: dict) -> list[str]:
    rows = [[r["model"], f"{r['parameters']:,}", f"{r['batch_1']:,.0f}", f"{r['batch_1000']:,.0f}"]
            for r in entry["rows"]]
    return _rows(["model", "parameters", "images/s, batch 1", "images/s, batch 1,000"], "lrrr", rows)


def _record(entry: dict) -> list[str]:
    rows = [[str(r["seed"]), f"{r['parameters']:,}", str(r["epochs"]), f"{r['train_seconds']:.0f}",
             _pct(r.get("val_acc")), _pct(r["test_acc"])] for r in entry["rows"]]
    acc, std, low = spread([r["test_acc"] for r in entry["rows"]])
    high = max(r["test_acc"] for r in entry["rows"])
    return [*_rows(["seed", "parameters", "epochs", "training s (validation excluded)", "validation acc",
                    "test acc"], "rrrrrr", rows), "",
            f"Test accuracy over {len(rows)} seeds: mean **{acc:.2%} ± {std:.2%}** (sample std), "
            f"min {low:.2%}, max {high:.2%}; trained on {entry['train_images']:,} images."
            + (f" Aim: a mean of at least {entry['aim']:.1%}: {_verdict(acc >= entry['aim'])} "
               f"({_near(acc, entry['aim'])})." if entry.get("aim") else "")]


def _near(value: float, aim: float) -> str:
    """``value`` as a percentage: two decimals, or three where two would round it onto ``aim``."""
    return f"{value:.3%}" if f"{value:.2%}" == f"{aim:.2%}" and value != aim else f"{value:.2%}"


def _verdict(reached: bool) -> str:
    return "reached" if reached else "not reached"


def _search(entry: dict) -> list[str]:
    rows = []
    for r in [entry["baseline"]] * ("baseline" in entry) + entry["rows"]:
        accs = " / ".join(f"{a:.2%}" for a in r["val_acc"])
        delta = "–" if r.get("delta") is None else f"{r['delta']:+.2%}"
        rows.append([r["kind"], r["change"], f"{r['parameters']:,}", accs, f"{statistics.mean(r['val_acc']):.2%}",
                     delta, f"`{r['command']}`" if r.get("command") else "–"])
    header = ["kind", "change tried", "parameters", "validation acc (seeds 0 / 1 / 2)", "mean",
              "against the recipe, same seeds", "command"]
    return _rows(header, "llrlrrl", rows)


def _export(entry: dict) -> list[str]:
    """Lesson 09's table: PyTorch float32 against ONNX float32 and int8, and how the files were checked."""
    lines = ["| model | threads | file size | test accuracy | images/s, batch 1 | images/s, batch 1,000 |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['label']} | {r['threads']} | {r['bytes'] / 1024:,.0f} KiB | {r['test_accuracy']:.2%} | "
              f"{r['images_per_s_batch_1']:,.0f} | {r['images_per_s_batch_1000']:,.0f} |"
              for r in entry["rows"].values()]
    parity, int8 = entry["parity"], entry["int8"]
    return [*lines, "", f"Checkpoint: {entry['checkpoint']} (model `{entry['model']}`). ONNX float32 predicts the "
            f"same digit as PyTorch for {parity['same_predictions']:,} of {parity['images']:,} test images (largest "
            f"logit difference {parity['max_abs_logit_diff']:.1e}); int8, calibrated on "
            f"{int8['calibration_images']:,} training images, agrees with float32 on "
            f"{int8['agreement_with_float32']:.2%} of the {int8['test_images']:,}. File size: the weights alone for "
            "PyTorch (`torch.save(model.state_dict())`), the whole file for ONNX.", "",
            f"Measured on: {entry['machine']}, torch {entry['torch']}, onnxruntime {entry['onnxruntime']}; "
            f"{' and '.join(map(str, entry['threads']))} threads; images/s: {entry['timing']}; load average "
            f"{entry['load_average']} before/after; {entry['date']}; {entry['seconds']:.0f} s in all.",
            f"Command: `{entry['command']}`"]


def _handwriting(entry: dict) -> list[str]:
    """Lesson 08's table: the synthetic writer's digits and MNIST validation, before and after adapting."""
    rows = [[r["model"], _pct(r["held_out"]), _pct(r["all_synthetic"]), _pct(r["mnist_val"])] for r in entry["rows"]]
    base = f"{entry['base']} (epoch {entry['base_epochs']})"
    base += f", the run tagged `{entry['base_tag']}`" if entry.get("base_tag") else ""
    return [*_rows(["model", "held-out synthetic", "all synthetic", "MNIST validation"], "lrrr", rows), "",
            f"Base model: {base}. {entry['synthetic']} synthetic digits, {entry['held_out']} of them held out "
            f"({_held_out_how(entry)}); each from-scratch model trains {entry['epochs']} epoch(s) on "
            f"{entry['subset'] or 'all the'} training images, sees no synthetic digit and is one seed."]


def _held_out_how(entry: dict) -> str:
    sessions = entry.get("sessions")
    return f"whole drawing sessions, of {sessions}" if sessions else "stratified"


#: Keys whose renderer already says where, when and how they were measured.
SELF_DESCRIBED = {"export"}

RENDERERS: dict[str, Callable[[dict], list[str]]] = {
    "export": _export, "handwriting": _handwriting,
    "seed_recipes": _seed_recipes, "throughput": _throughput, "time_to_99": _time_to_99, "inference": _inference,
    "record": _record, "record_refit": _record, "record_search": _search, "fast_search": _search,
}


def _conditions(entry: dict) -> str:
    c = entry.get("conditions")
    if not c:  # measured row by row: each row keeps its own conditions
        return entry.get("note", "Each row's command, machine and date are stored with it in results.json.")
    m = c.get("machine", {})
    where = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}, "
             f"{m.get('threads', '?')} thread(s), device {m.get('device', 'cpu')}") if m else "?"
    load = f"; load average {c['load_before']} before, {c['load_after']} after" if "load_before" in c else ""
    took = f"; {c['minutes']} minutes" if "minutes" in c else ""
    line = f"Measured on: {where}{load}; {c.get('date', '?')}{took}. Command: `{c.get('command', '?')}`"
    return line + (f"\n\n{entry['note']}" if entry.get("note") else "")


def table(key: str, results: dict | None = None) -> str:
    """The figures under ``key`` as a markdown table, with where, when and how they were measured."""
    entry = figures(key, results)
    if key not in RENDERERS:
        raise ResultsMissingError(f"no table for {key!r}; tables: {', '.join(RENDERERS)}")
    tail = [] if key in SELF_DESCRIBED else ["", _conditions(entry)]
    return "\n".join([*RENDERERS[key](entry), *tail])


def show(key: str, results: dict | None = None) -> None:
    """Display ``table(key)``: as formatted markdown in a notebook, as text elsewhere."""
    text = table(key, results)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


_BLOCK = re.compile(r"(<!-- results:(?P<key>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=key) -->)", re.S)


def render_blocks(text: str, results: dict | None = None) -> str:
    """``text`` with every ``<!-- results:KEY -->`` … ``<!-- /results:KEY -->`` block re-rendered from results."""
    results = load() if results is None else results
    return _BLOCK.sub(lambda m: f"{m.group(1)}\n{table(m.group('key'), results)}\n\n{m.group(4)}", text)
