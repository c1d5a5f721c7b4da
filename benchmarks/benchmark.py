"""Measure the fast training path against the DigitRecognizerCNN recipe's, side by side, in one process.

Three tables, printed as markdown:

1. Training throughput (images/s, seconds per 55,000-image epoch, ratio): the recipe's pipeline —
   torchvision MNIST, per-image PIL RandomRotation(5), a default DataLoader — against mnistlib's
   in-memory batches (``get_data`` / ``TensorLoader``), same model (DigitRecognizerCNN), same
   augmentation, then each speed setting on top, one at a time: batch size, threads,
   channels-last, ``torch.compile`` (its compile time measured too), and the fast recipe's model.
2. Time to 99.0 % test accuracy: the DigitRecognizerCNN recipe (10 epochs) against mnistlib's fast
   recipe (:data:`mnistlib.fast.FAST_RECIPES` ``["fast"]``), wall-clock training time from the first
   step; the test set is scored after every epoch, and that time is reported but excluded.
   The fast recipe was chosen on the validation split; the test set is read here only to measure.
3. Inference: images/s with batches of 1 and of 1,000.

Both training paths run mnistlib's own loop (:func:`mnistlib.training.train_one_epoch`).

    MNISTLIB_DATA=/path/to/data python benchmarks/benchmark.py            # full: ~6 min on 2 idle cores
    MNISTLIB_DATA=/path/to/data python benchmarks/benchmark.py --quick    # about a minute, a sanity check
    python benchmarks/benchmark.py --device cuda                          # data and model on the GPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import torch
from mnistlib.fast import (
    FAST_RECIPES,
    TimedRun,
    cpu_name,
    cpu_threads_available,
    images_per_second,
    inference_speed,
    set_threads,
    to_channels_last,
    train_timed,
)
from torch.utils.data import DataLoader, Subset

from mnistlib.data import TensorLoader, get_data, torchvision_loaders
from mnistlib.models import count_parameters, get_model
from mnistlib.recipes import get_recipe

TARGET = 0.99
EPOCH_IMAGES = 55_000  # the training split


@dataclass
class Settings:
    """How much to measure: the full benchmark, ``--quick`` (≈1 min) or ``--smoke`` (seconds, for tests)."""

    mode: str = "full"
    steps: int = 120  # timed batches per throughput row (seed pipeline: a third of it)
    repeats: int = 3  # throughput rows: the median of this many timings
    seed_epochs: int = 10
    subset: int | None = None  # training images for the time-to-accuracy runs (None: all 55,000)
    fast_epochs: int | None = None  # None: the recipe's own
    test_subset: int | None = None  # score only the first N test images (None: all 10,000)
    inference_seconds: float = 1.0
    warmup: int = 5  # untimed batches before each timing
    compile: bool = True

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        """The settings of a named mode."""
        if mode == "quick":
            return cls(mode, steps=24, repeats=1, seed_epochs=1, subset=4_000, fast_epochs=1,
                       test_subset=2_000, inference_seconds=0.3, compile=False)
        if mode == "smoke":
            return cls(mode, steps=3, repeats=1, seed_epochs=1, subset=256, fast_epochs=1,
                       test_subset=200, inference_seconds=0.0, warmup=1, compile=False)
        return cls(mode)


@dataclass
class Report:
    """Everything measured, for the markdown tables and ``--json``."""

    throughput: list[dict] = field(default_factory=list)
    time_to_target: list[dict] = field(default_factory=list)
    inference: list[dict] = field(default_factory=list)
    conditions: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def machine(device: str) -> str:
    """One line about where this ran: CPU (and GPU), torch version and threads."""
    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if device.startswith("cuda") else ""
    return f"{os.cpu_count()}-core CPU ({cpu}){gpu}, torch {torch.__version__}"


def load_average() -> str:
    """The 1-minute load average (how busy the machine was), or '?' where unknown."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "?"


def seed_train_loader(
    batch_size: int, subset: int | None, seed: int, test_subset: int | None = None
) -> tuple[DataLoader, DataLoader]:
    """The DigitRecognizerCNN recipe's pipeline: torchvision MNIST, PIL RandomRotation(5), DataLoader."""
    train, _, test = torchvision_loaders(batch_size, "rotate5", seed=seed)
    if subset is not None:
        data = Subset(train.dataset, range(min(subset, len(train.dataset))))
        train = DataLoader(data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    if test_subset is not None:
        test = DataLoader(Subset(test.dataset, range(test_subset)), test.batch_size)
    return train, test


def first(loader: TensorLoader, n: int | None) -> TensorLoader:
    """The first ``n`` images of an in-memory evaluation loader (all of them for None)."""
    if n is None:
        return loader
    return TensorLoader(loader.images[:n], loader.labels[:n], loader.batch_size, shuffle=False,
                        mean=loader.mean, std=loader.std, device=loader.device)


def median_speed(measure: Callable[[], float], repeats: int) -> float:
    """The median of ``repeats`` throughput measurements (the machine may be shared)."""
    return statistics.median(measure() for _ in range(repeats))


def fresh(name: str, seed: int = 0, **options: object) -> torch.nn.Module:
    """A registry model built after seeding, so every row starts from the same weights."""
    torch.manual_seed(seed)
    return get_model(name, **options)


# --------------------------------------------------------------------------- 1. throughput


def throughput(s: Settings, device: str, threads: int, report: Report) -> None:
    """Table 1: the seed pipeline, then mnistlib's path with one speed setting added at a time."""
    rows = report.throughput

    def add(step: str, ips: float, note: str = "") -> None:
        rows.append({"step": step, "images_per_s": ips, "note": note})
        print(f"  {step}: {ips:,.0f} images/s {note}", flush=True)

    def speed(loader: object, model: Callable[[], torch.nn.Module] | None = None, steps: int | None = None,
              channels_last: bool = False) -> float:
        make = model or (lambda: fresh("digit-recognizer"))
        return median_speed(lambda: images_per_second(make(), loader, steps=steps or s.steps, warmup=s.warmup,
                                                      device=device, channels_last=channels_last), s.repeats)

    print("1. training throughput (DigitRecognizerCNN, RandomRotation(5), Adam)", flush=True)
    seed_train, _ = seed_train_loader(128, None, 0)
    add("DigitRecognizerCNN recipe: torchvision + PIL + DataLoader, batch 128",
        speed(seed_train, steps=max(2, s.steps // 3)))
    for bs in (128, 256, 512):
        loader = get_data(bs, "rotate5", device=device).train
        add(f"mnistlib in-memory batches (TensorLoader), batch {bs}", speed(loader))
    data = get_data(256, "rotate5", device=device)
    add("… batch 256, channels-last", speed(data.train, channels_last=True))
    if device == "cpu":
        for n in sorted({1, threads}):
            previous = set_threads(n)
            try:
                add(f"… batch 256, {n} thread{'s' if n > 1 else ''}", speed(data.train))
            finally:
                set_threads(previous)
    if s.compile:
        model = fresh("digit-recognizer").to(device)
        t0 = time.perf_counter()
        try:
            import torch._inductor.config as inductor_config

            # A learner's first compile: without the on-disk caches a previous run may have left.
            with patch.object(inductor_config, "force_disable_caches", True):
                compiled = torch.compile(model)
                images_per_second(compiled, data.train, steps=1, warmup=1, device=device)  # compiles
            compile_s = time.perf_counter() - t0
            add("… batch 256, torch.compile", speed(data.train, model=lambda: compiled),
                f"(compile: {compile_s:.0f} s, caches off)")
            rows[-1]["compile_seconds"] = compile_s
        except Exception as exc:  # no compiler, unsupported platform
            print(f"  torch.compile failed: {type(exc).__name__}: {exc}", flush=True)
            rows.append({"step": "… batch 256, torch.compile", "images_per_s": float("nan"),
                         "note": f"failed: {type(exc).__name__}"})
    fast = FAST_RECIPES["fast"]
    fast_data = get_data(fast.batch_size, fast.augment, device=device)
    layout = ", channels-last" if fast.channels_last else ""
    add(f"fast recipe's model ({fast.model} {fast.model_options}, batch {fast.batch_size}, augment {fast.augment}"
        f"{layout})", speed(fast_data.train, model=lambda: fresh(fast.model, **fast.model_options),
                            channels_last=fast.channels_last))


# --------------------------------------------------------------------------- 2. time to 99 %


def time_to_target(s: Settings, device: str, report: Report) -> None:
    """Table 2: the DigitRecognizerCNN recipe against the fast recipe, to 99.0 % test accuracy."""
    print(f"2. time to {TARGET:.1%} test accuracy", flush=True)

    def show(epoch: int, run: TimedRun) -> None:
        print(f"  epoch {epoch}: {run.train_seconds[-1]:.1f} s training, test {run.accuracy[-1]:.2%} "
              f"(scored in {run.eval_seconds[-1]:.1f} s)", flush=True)

    seed = get_recipe("digit-recognizer")
    train, test = seed_train_loader(seed.batch_size, s.subset, 0, s.test_subset)
    print(f"  {seed.title}: {s.seed_epochs} epochs, torchvision pipeline", flush=True)
    run = train_timed(fresh(seed.model), train, test, epochs=s.seed_epochs, lr=seed.lr,
                      optimizer=seed.optimizer, device=device, on_epoch=show)
    report.time_to_target.append(_row(f"{seed.title} (torchvision pipeline)", run))

    fast = FAST_RECIPES["fast"]
    data = get_data(fast.batch_size, fast.augment, subset=s.subset, device=device)
    epochs = s.fast_epochs or fast.epochs
    print(f"  {fast.title}: {epochs} epochs, in-memory batches", flush=True)
    run = train_timed(fresh(fast.model, **fast.model_options), data.train, first(data.test, s.test_subset),
                      epochs=epochs, lr=fast.lr,
                      optimizer=fast.optimizer, optimizer_options=fast.optimizer_options,
                      scheduler=fast.scheduler, scheduler_options=fast.scheduler_options, device=device,
                      channels_last=fast.channels_last, on_epoch=show)
    layout = ", channels-last" if fast.channels_last else ""
    report.time_to_target.append(
        _row(f"fast recipe ({fast.model}, {fast.scheduler}, batch {fast.batch_size}{layout}, in-memory)", run))


def _row(name: str, run: TimedRun) -> dict:
    return {
        "recipe": name, "epochs": len(run.accuracy), "train_seconds": run.total_train_seconds,
        "seconds_to_target": run.seconds_to(TARGET), "epochs_to_target": run.epochs_to(TARGET),
        "final_accuracy": run.accuracy[-1], "best_accuracy": max(run.accuracy),
        "eval_seconds": sum(run.eval_seconds), "accuracy": run.accuracy, "epoch_seconds": run.train_seconds,
    }


# --------------------------------------------------------------------------- 3. inference


def inference(s: Settings, device: str, report: Report) -> None:
    """Table 3: prediction throughput for batches of 1 and 1,000, per model."""
    print("3. inference", flush=True)
    images = get_data(1_000, device=device).test.batch(torch.arange(1_000))
    fast, record = FAST_RECIPES["fast"], FAST_RECIPES["record"]
    for name, options, cl in (("digit-recognizer", {}, False), (fast.model, fast.model_options, fast.channels_last),
                              (record.model, record.model_options, record.channels_last)):
        model = fresh(name, **options)
        if cl:
            to_channels_last(model)
        row = {"model": name + (" (channels-last)" if cl else ""), "parameters": count_parameters(model)}
        for bs in (1, 1_000):
            row[f"batch_{bs}"] = inference_speed(model, bs, images=images, min_seconds=s.inference_seconds,
                                                 device=device, warmup=min(s.warmup, 2))
        report.inference.append(row)
        print(f"  {name}: batch 1 {row['batch_1']:,.0f}/s, batch 1000 {row['batch_1000']:,.0f}/s", flush=True)


# --------------------------------------------------------------------------- record model


def record_runs(seeds: list[int], device: str, epochs: int | None = None, subset: int | None = None,
                val_size: int = 5_000) -> str:
    """Train the record recipe with :func:`mnistlib.training.fit` once per seed; score the test set once at the end.

    Everything about the recipe was chosen on the validation split; the test set is read here, after
    training, for the final figures only. ``val_size=0`` refits the chosen recipe on all 60,000
    training images (no validation column then). Returns a markdown table with the mean and spread.
    """
    from mnistlib.training import evaluate, fit

    recipe = FAST_RECIPES["record"]
    kwargs = recipe.fit_kwargs() | ({"epochs": epochs} if epochs else {})
    lines = [f"### Record model: {recipe.title}", "",
             "| seed | parameters | epochs | training s (validation excluded) | wall s | validation acc | test acc |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    tests, trains = [], []
    for seed in seeds:
        data = get_data(recipe.batch_size, recipe.augment, val_size=val_size, subset=subset, seed=seed,
                        device=device)
        model = fresh(recipe.model, seed=seed, **recipe.model_options)
        if recipe.channels_last:
            to_channels_last(model)
        val_seconds: list[float] = []

        def timed_val(history: object, data: object = data, model: torch.nn.Module = model,
                      val_seconds: list[float] = val_seconds) -> None:
            t0 = time.perf_counter()
            evaluate(model, data.val, device)  # what fit just spent scoring the validation split
            val_seconds.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        history = fit(model, data, **kwargs, seed=seed, device=device, save_checkpoints=False, progress=False,
                      on_epoch=timed_val)
        wall = time.perf_counter() - t0 - sum(val_seconds)  # minus the extra timing pass
        train_s = sum(history.seconds) - sum(val_seconds)
        test = evaluate(model, data.test, device)[1]
        tests.append(test)
        trains.append(train_s)
        val = f"{history.val_acc[-1]:.2%}" if val_size else "—"
        lines.append(f"| {seed} | {count_parameters(model):,} | {len(history.epoch)} | {train_s:.0f} | {wall:.0f} | "
                     f"{val} | {test:.2%} |")
        print(f"  seed {seed}: test {test:.2%}, validation {val}, {train_s:.0f} s training", flush=True)
    refit = "" if val_size or subset else " (all of the training set: the recipe was chosen before, on validation)"
    lines[2:2] = [f"Trained on {data.train.dataset_size:,} images{refit}.", ""]
    mean = statistics.mean(tests)
    spread = statistics.stdev(tests) if len(tests) > 1 else 0.0
    lines += ["", f"Test accuracy over seeds {', '.join(map(str, seeds))}: mean {mean:.2%} ± {spread:.2%} "
              f"(sample std), min {min(tests):.2%}, max {max(tests):.2%}; training "
              f"{statistics.mean(trains):.0f} s per run on average."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def markdown(report: Report) -> str:
    """The three tables and the conditions, as markdown."""
    out = ["### 1. Training throughput (DigitRecognizerCNN, RandomRotation(5), Adam)", "",
           "| step | images/s | s / epoch (55,000) | × recipe pipeline |", "|---|---:|---:|---:|"]
    base = report.throughput[0]["images_per_s"] if report.throughput else float("nan")
    for r in report.throughput:
        ips = r["images_per_s"]
        step = f"{r['step']} {r.get('note', '')}".strip()
        out.append(f"| {step} | {ips:,.0f} | {EPOCH_IMAGES / ips:.1f} | {ips / base:.1f}× |")
    out += ["", f"### 2. Time to {TARGET:.1%} test accuracy (evaluation time excluded)", "",
            "| recipe | epochs run | training s | reached 99.0 % | best test acc | eval s (excluded) |",
            "|---|---:|---:|---|---:|---:|"]
    for r in report.time_to_target:
        reached = (f"after {r['seconds_to_target']:.1f} s (epoch {r['epochs_to_target']})"
                   if r["seconds_to_target"] is not None else "not reached")
        out.append(f"| {r['recipe']} | {r['epochs']} | {r['train_seconds']:.1f} | {reached} | "
                   f"{r['best_accuracy']:.2%} | {r['eval_seconds']:.1f} |")
    if len(report.time_to_target) == 2:
        seed, fast = report.time_to_target
        if fast["seconds_to_target"] is not None:
            out += ["", f"Fast recipe to 99.0 %: {fast['seconds_to_target']:.1f} s = "
                    f"1/{seed['train_seconds'] / fast['seconds_to_target']:.0f} of the DigitRecognizerCNN "
                    f"recipe's {seed['epochs']}-epoch training ({seed['train_seconds']:.0f} s)."]
    out += ["", "### 3. Inference (eval mode, no gradients)", "",
            "| model | parameters | images/s, batch 1 | images/s, batch 1,000 |", "|---|---:|---:|---:|"]
    for r in report.inference:
        out.append(f"| {r['model']} | {r['parameters']:,} | {r['batch_1']:,.0f} | {r['batch_1000']:,.0f} |")
    c = report.conditions
    out += ["", f"Measured on: {c['machine']}; {c['threads']} torch threads; device {c['device']}; mode {c['mode']}; "
            f"load average {c['load_before']} before, {c['load_after']} after; {c['date']}; "
            f"{c['minutes']:.1f} minutes in all.", f"Command: `{c['command']}`"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the three measurements and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a minute-long sanity version (CI)")
    mode.add_argument("--smoke", action="store_true", help="a few seconds: checks the script runs (tests)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per CPU)")
    parser.add_argument("--seed-epochs", type=int, default=None, help="epochs of the DigitRecognizerCNN recipe")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "time", "inference"],
                        help="leave out some tables")
    parser.add_argument("--record", action="store_true",
                        help="instead: train the record recipe once per --seeds with fit and score the test set")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --record")
    parser.add_argument("--record-epochs", type=int, default=None, help="override the record recipe's epochs")
    parser.add_argument("--record-val-size", type=int, default=5_000,
                        help="validation images held out in --record; 0 refits on all 60,000")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure as JSON here")
    args = parser.parse_args(argv)

    s = Settings.for_mode("quick" if args.quick else "smoke" if args.smoke else "full")
    if args.seed_epochs is not None:
        s.seed_epochs = args.seed_epochs
    if args.no_compile:
        s.compile = False
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available here")
    threads = args.threads or cpu_threads_available()
    set_threads(threads)
    if args.record:
        start, load_before = time.perf_counter(), load_average()
        subset = {"quick": 2_000, "smoke": 256}.get(s.mode)
        epochs = args.record_epochs or (1 if subset else None)
        text = record_runs(args.seeds, device, epochs=epochs, subset=subset, val_size=args.record_val_size)
        text += (f"\n\nMeasured on: {machine(device)}; {torch.get_num_threads()} torch threads; device {device}; "
                 f"load average {load_before} before, {load_average()} after; "
                 f"{dt.datetime.now().isoformat(' ', 'minutes')}; "
                 f"{(time.perf_counter() - start) / 60:.1f} minutes in all."
                 f"\nCommand: `python benchmarks/benchmark.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
        print(text)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n", encoding="utf-8")
        return 0
    report = Report()
    load_before, start = load_average(), time.perf_counter()
    if "throughput" not in args.skip:
        throughput(s, device, threads, report)
    if "time" not in args.skip:
        time_to_target(s, device, report)
    if "inference" not in args.skip:
        inference(s, device, report)
    command = "python benchmarks/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report.conditions = {
        "machine": machine(device), "threads": torch.get_num_threads(), "device": device, "mode": s.mode,
        "load_before": load_before, "load_after": load_average(), "date": dt.datetime.now().isoformat(" ", "minutes"),
        "minutes": (time.perf_counter() - start) / 60, "command": command.strip(),
    }
    text = markdown(report)
    print()
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.__dict__, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
