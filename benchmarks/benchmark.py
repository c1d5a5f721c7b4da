"""Measure the fast training path against the DigitRecognizerCNN recipe's, side by side, in one process.

Three tables, written to ``benchmarks/results.json`` (keys ``throughput``, ``time_to_99``, ``inference``)
and printed as markdown:

1. Training throughput (images/s): the recipe's pipeline — torchvision MNIST, per-image PIL
   RandomRotation(5), a default DataLoader — against mnistlib's in-memory batches, same model and
   augmentation, then each speed setting on top, one at a time: batch size, channels-last, threads,
   ``torch.compile`` (its compile time measured too), and the fast recipe's model.
2. An honest time to 99 %: each recipe trained with its FIXED schedule (chosen beforehand on the
   validation split), once per seed, through ``mnistlib.recipes.train``; the test set stays sealed
   until the last epoch and is then read once: the *final* accuracy, never the best epoch's. Training
   seconds are the ``Timer`` callback's (validation excluded). Runs of the two recipes alternate, so
   both meet the same machine load.
3. Inference: images/s with batches of 1 and of 1,000.

``--record`` instead trains the record recipe once per ``--seeds`` and reads its test set once per run
(key ``record``). Throughput goes through ``mnistlib.speed``; every training run through ``train``.

    MNISTLIB_DATA=/path/to/data OMP_NUM_THREADS=1 nice -n 5 python benchmarks/benchmark.py --threads 1
    python benchmarks/benchmark.py --quick      # about two minutes, a sanity check (writes nothing)
    python benchmarks/benchmark.py --record --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest.mock import patch

import torch
from machine import Conditions, cpu_threads_available, describe_model, load_average
from store import RESULTS_PATH, save_result
from torch.utils.data import DataLoader, Subset

from mnistlib.course.results import table
from mnistlib.data import DataBundle, get_data, torchvision_loaders
from mnistlib.devices import seed_everything, threads
from mnistlib.evaluation import SealedLoader
from mnistlib.models import count_parameters
from mnistlib.recipes import RECIPES, Recipe, get_recipe, train
from mnistlib.speed import inference_images_per_second, training_images_per_second
from mnistlib.training import evaluate

EPOCH_IMAGES = 55_000  # the training split
SEED_RECIPE = "digit-recognizer"


@dataclass
class Settings:
    """How much to measure: the full benchmark, ``--quick`` or ``--smoke`` (seconds, for tests)."""

    mode: str = "full"
    steps: int = 120  # timed batches per throughput row (the torchvision pipeline: a third of it)
    repeats: int = 5  # throughput: rounds of every row; each row's median is reported
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seed_recipe_runs: int | None = None  # the DigitRecognizerCNN recipe on the first N seeds (None: all)
    epochs: int | None = None  # None: each recipe's own
    subset: int | None = None  # training images (None: all 55,000)
    inference_seconds: float = 1.0
    warmup: int = 5  # untimed batches before each timing
    compile: bool = True

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        """The settings of a named mode."""
        if mode == "quick":
            return cls(mode, steps=24, repeats=1, seeds=[0, 1], epochs=1, subset=4_000, inference_seconds=0.3,
                       compile=False)
        if mode == "smoke":
            return cls(mode, steps=3, repeats=1, seeds=[0], epochs=1, subset=256, inference_seconds=0.0, warmup=1,
                       compile=False)
        return cls(mode)


def fresh(recipe: Recipe) -> torch.nn.Module:
    """The recipe's model built after seeding, so every row starts from the same weights."""
    seed_everything(0)
    return recipe.build()


# --------------------------------------------------------------------------- 1. throughput


@dataclass
class Probe:
    """One throughput row: what to train, on which batches, for how many timed steps, on how many threads."""

    step: str
    loader: Iterable
    make: Callable[[], torch.nn.Module]
    steps: int
    threads: int | None = None
    note: str = ""


def probes(s: Settings, device: str) -> list[Probe]:
    """Table 1's rows: the seed pipeline, then mnistlib's path with one speed setting added at a time."""
    seed, fast = get_recipe(SEED_RECIPE), get_recipe("fast")
    data = get_data(256, "rotate5", device=device)
    rows = [Probe("DigitRecognizerCNN recipe: torchvision + PIL + DataLoader, batch 128",
                  torchvision_loaders(128, "rotate5")[0], lambda: fresh(seed), max(2, s.steps // 3))]
    rows += [Probe(f"mnistlib in-memory batches (TensorLoader), batch {bs}",
                   get_data(bs, "rotate5", device=device).train, lambda: fresh(seed), s.steps)
             for bs in (128, 256, 512)]
    layout = replace(seed, channels_last=True)
    rows.append(Probe("… batch 256, channels-last", data.train, lambda: fresh(layout), s.steps))
    if device == "cpu":
        rows += [Probe(f"… batch 256, {n} thread{'s' if n > 1 else ''}", data.train, lambda: fresh(seed), s.steps, n)
                 for n in sorted({1, cpu_threads_available()})]
    if s.compile:
        rows += compiled_probe(s, device, data)
    rows.append(Probe(f"fast recipe's model ({describe_model(fresh(fast))}, batch {fast.batch_size}, augment "
                      f"{fast.augment})", get_data(fast.batch_size, fast.augment, device=device).train,
                      lambda: fresh(fast), s.steps))
    return rows


def compiled_probe(s: Settings, device: str, data: DataBundle) -> list[Probe]:
    """``torch.compile`` on the batch-256 row, compiled now and timed (a learner's first compile: caches off)."""
    try:
        import torch._inductor.config as inductor_config

        t0 = time.perf_counter()
        with patch.object(inductor_config, "force_disable_caches", True):
            compiled = torch.compile(fresh(get_recipe(SEED_RECIPE)))
            training_images_per_second(compiled, data.train, steps=1, warmup=1, device=device)  # compiles
    except Exception as exc:  # no compiler, unsupported platform
        print(f"  torch.compile failed: {type(exc).__name__}: {exc}", flush=True)
        return []
    note = f"(compile: {time.perf_counter() - t0:.0f} s, caches off)"
    return [Probe("… batch 256, torch.compile", data.train, lambda: compiled, s.steps, note=note)]


def throughput(s: Settings, device: str) -> list[dict]:
    """Table 1, in rounds: every row once per round, so that all rows meet the same load; the median per row."""
    print("1. training throughput (DigitRecognizerCNN, RandomRotation(5), Adam)", flush=True)
    rows = probes(s, device)
    speeds: list[list[float]] = [[] for _ in rows]
    for round_ in range(1, s.repeats + 1):
        for row, measured in zip(rows, speeds, strict=True):
            with threads(row.threads):
                measured.append(training_images_per_second(row.make(), row.loader, steps=row.steps, warmup=s.warmup,
                                                  device=device))
        print(f"  round {round_}/{s.repeats} done (load {load_average()})", flush=True)
    return [{"step": r.step, "images_per_s": statistics.median(m), "each_round": m, "note": r.note}
            for r, m in zip(rows, speeds, strict=True)]


# --------------------------------------------------------------------------- 2. time to 99 %


def recipe_data(recipe: Recipe, seed: int, s: Settings, device: str, pipeline: str, val_size: int = 5_000
                ) -> DataBundle:
    """The recipe's data, test split sealed; ``pipeline="torchvision"``: its training batches come the
    classic way (torchvision + PIL + DataLoader), validation and test from the same in-memory images."""
    data = get_data(recipe.batch_size, recipe.augment, val_size=val_size, subset=s.subset, seed=seed, device=device)
    if pipeline == "torchvision":
        train_loader = torchvision_loaders(recipe.batch_size, recipe.augment, seed=seed)[0]
        if s.subset is not None:
            train_loader = DataLoader(Subset(train_loader.dataset, range(s.subset)), recipe.batch_size, shuffle=True,
                                      generator=torch.Generator().manual_seed(seed))
        data.train = train_loader  # type: ignore[assignment]
    data.test = SealedLoader(data.test)  # type: ignore[assignment]
    return data


def final_test_run(recipe: Recipe, seed: int, s: Settings, device: str, pipeline: str = "in-memory",
                   val_size: int = 5_000) -> dict:
    """Train the recipe's fixed schedule once, then read the test set once: its final accuracy."""
    data = recipe_data(recipe, seed, s, device, pipeline, val_size)
    overrides = {"epochs": s.epochs} if s.epochs else {}
    run = train(recipe, data, seed=seed, device=device, save=False, verbose=False, **overrides)
    with data.test.unsealed() as test:  # type: ignore[attr-defined]
        test_acc = evaluate(run.model, test, device)[1]
    val = run.history.val_acc[-1]
    return {"seed": seed, "epochs": len(run.history), "train_seconds": sum(run.history.train_seconds),
            "val_acc": None if val != val else val, "test_acc": test_acc, "parameters": count_parameters(run.model),
            "train_images": len(data.train.dataset) if pipeline == "torchvision" else data.train.dataset_size}


def time_to_99(s: Settings, device: str) -> list[dict]:
    """Table 2: both recipes' fixed schedules over the seeds, runs alternating; final test accuracy of each."""
    plan = [(get_recipe(SEED_RECIPE), "torchvision"), (get_recipe("fast"), "in-memory")]
    rows = [{"recipe": r.name, "title": r.title, "pipeline": pipe, "epochs": s.epochs or r.epochs, "seeds": [],
             "train_seconds": [], "val_acc": [], "test_acc": []} for r, pipe in plan]
    print("2. time to 99 %: fixed schedules, final test accuracy", flush=True)
    for i, seed in enumerate(s.seeds):
        for (recipe, pipeline), row in zip(plan, rows, strict=True):
            if recipe.name == SEED_RECIPE and s.seed_recipe_runs is not None and i >= s.seed_recipe_runs:
                continue
            run = final_test_run(recipe, seed, s, device, pipeline)
            for key in ("train_seconds", "val_acc", "test_acc"):
                row[key].append(run[key])
            row["seeds"].append(seed)
            print(f"  {recipe.name}, seed {seed}: {run['train_seconds']:.1f} s training, final test "
                  f"{run['test_acc']:.2%} (validation {run['val_acc']:.2%}; load {load_average()})", flush=True)
    return rows


# --------------------------------------------------------------------------- 3. inference


def inference(s: Settings, device: str) -> list[dict]:
    """Table 3: prediction throughput for batches of 1 and 1,000, per model."""
    print("3. inference", flush=True)
    rows = []
    for name in (SEED_RECIPE, "fast", "record"):
        model = fresh(get_recipe(name))
        row = {"model": describe_model(model).split(" (")[0] + (" (channels-last)" * RECIPES[name].channels_last),
               "parameters": count_parameters(model)}
        model.to(device).eval()
        for bs in (1, 1_000):
            with torch.inference_mode():
                row[f"batch_{bs}"] = inference_images_per_second(
                    lambda b, m=model: m(b).argmax(1), torch.randn(bs, 1, 28, 28, device=device), bs,
                    seconds=s.inference_seconds, repeats=1, device=device)
        rows.append(row)
        print(f"  {row['model']}: batch 1 {row['batch_1']:,.0f}/s, batch 1000 {row['batch_1000']:,.0f}/s", flush=True)
    return rows


# --------------------------------------------------------------------------- the record model


def record(s: Settings, device: str, val_size: int) -> dict:
    """The record recipe, once per seed, test set read once after each run (``val_size=0``: all 60,000 images)."""
    rows = []
    for seed in s.seeds:
        run = final_test_run(get_recipe("record"), seed, s, device, val_size=val_size)
        rows.append({k: run[k] for k in ("seed", "parameters", "epochs", "train_seconds", "val_acc", "test_acc")})
        print(f"  record, seed {seed}: test {run['test_acc']:.2%}, {run['train_seconds']:.0f} s training "
              f"(load {load_average()})", flush=True)
    return {"recipe": "record", "aim": 0.996, "rows": rows, "train_images": run["train_images"]}


# --------------------------------------------------------------------------- main


NOTES = {
    "time_to_99": "Each run trains its recipe's fixed schedule (chosen on the validation split) and reads the "
                  "test set once, after its last epoch; training seconds exclude validation.",
    "throughput": "Each row's median over {repeats} rounds, every row timed once per round so that all meet the "
                  "same load: {steps} Adam steps (the torchvision pipeline: a third as many), loading and "
                  "augmenting the batches included.",
}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    """The command line and the settings it asks for."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a sanity version of a couple of minutes")
    mode.add_argument("--smoke", action="store_true", help="a few seconds: checks the script runs (tests)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: one per CPU)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "time", "inference"],
                   help="leave out some tables")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0-4; --record: 0 1 2)")
    p.add_argument("--seed-recipe-runs", type=int, default=None,
                   help="time to 99 %%: run the DigitRecognizerCNN recipe on only the first N seeds (it is slow)")
    p.add_argument("--record", action="store_true",
                   help="instead: train the record recipe once per --seeds and score the test set")
    p.add_argument("--record-epochs", type=int, default=None, help="override the record recipe's epochs")
    p.add_argument("--record-val-size", type=int, default=5_000,
                   help="validation images held out in --record; 0 refits on all 60,000")
    p.add_argument("--results", type=Path, default=None,
                   help="write the figures here (default: benchmarks/results.json for a full run; "
                        "--quick and --smoke write nowhere unless given)")
    args = p.parse_args(argv)
    s = Settings.for_mode("quick" if args.quick else "smoke" if args.smoke else "full")
    if args.record:
        s.seeds = args.seeds or [0, 1, 2]
        s.epochs = args.record_epochs or s.epochs
    elif args.seeds:
        s.seeds = args.seeds
    s.seed_recipe_runs = args.seed_recipe_runs
    s.compile = s.compile and not args.no_compile
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available here")
    full = s.mode == "full" and (not args.record or not args.record_epochs)
    args.results = args.results or (RESULTS_PATH if full else None)
    return args, s


def measure(args: argparse.Namespace, s: Settings, argv: list[str] | None) -> dict[str, dict]:
    """Run the tables asked for; each key's figures come with their own conditions."""
    device = args.device
    record_key = "record" if args.record_val_size else "record_refit"  # a refit on all 60,000 images is its own row
    jobs: dict[str, Callable[[], dict]] = {record_key: lambda: record(s, device, args.record_val_size)} if args.record \
        else {"throughput": lambda: {"rows": throughput(s, device), "epoch_images": EPOCH_IMAGES},
              "time_to_99": lambda: {"aim": {"accuracy": 0.99, "fraction": 40}, "rows": time_to_99(s, device)},
              "inference": lambda: {"rows": inference(s, device)}}
    skipped = {"throughput": "throughput", "time_to_99": "time", "inference": "inference"}
    out = {}
    for key, job in jobs.items():
        if skipped.get(key) in args.skip:
            continue
        conditions = Conditions("benchmark.py", argv, device)
        entry = job()
        entry["conditions"] = conditions.finish()
        if key in NOTES:
            entry["note"] = NOTES[key].format(repeats=s.repeats, steps=s.steps)
        out[key] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the measurements, print the tables and store them."""
    args, s = parse(argv)
    with threads(args.threads or cpu_threads_available()):
        entries = measure(args, s, argv)
    for key, entry in entries.items():
        print(f"\n### {key}\n\n{table(key, {key: entry})}")
        if args.results is not None:
            save_result(key, entry, args.results)
    if args.results is not None:
        print(f"\nwritten to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
