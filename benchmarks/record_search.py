"""Try a variant of the record (or fast) recipe and print its validation accuracy — the test set is never read.

This is how the record recipe (``mnistlib.recipes.RECIPES["record"]``) was chosen: each variant
trains through ``mnistlib.recipes.train`` once per seed and reports the validation accuracy after
its last epoch, one markdown row per variant. The test split is sealed: reading it raises. Only
``benchmark.py --record`` reads the test set, once, for the recipe this search picked.

    MNISTLIB_DATA=/path/to/data python benchmarks/record_search.py --epochs 25 --scale 0.1 --seeds 0 1

``--results benchmarks/results.json`` also adds the row to the search table there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

from experiments import (
    RecalibrateBatchNorm,
    TeacherTargets,
    clean_loader,
    distillation_loss,
    register_separable,
    report_teachers,
)
from machine import Conditions
from store import save_result
from torch import nn

from mnistlib.checkpoints import load_checkpoint, save_checkpoint
from mnistlib.course.results import figures, load
from mnistlib.data import Augment, get_augment, get_data
from mnistlib.devices import threads
from mnistlib.evaluation import SealedLoader
from mnistlib.models import count_parameters
from mnistlib.recipes import RECIPES, Recipe, train


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line: what to change in the record recipe, and how many seeds to run it on."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="record", choices=["record", "fast"],
                   help="the recipe to vary (default: record); options not given keep its settings")
    p.add_argument("--widths", type=int, nargs="+", default=None, help="RecordNet filter counts")
    p.add_argument("--pool-after", type=int, nargs="+", default=None, help="conv indices followed by a max-pool")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--augment", default=None, help="a named augmentation (mnistlib.data; default: the recipe's)")
    p.add_argument("--scale", type=float, default=None, help="add a random zoom of up to ± this fraction")
    p.add_argument("--elastic", type=float, default=None, help="add an elastic warp of up to this many pixels")
    p.add_argument("--lr", type=float, default=None, help="(peak) learning rate (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the recipe's)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy's label smoothing")
    p.add_argument("--weight-decay", type=float, default=None, help="SGD's weight decay")
    p.add_argument("--recalibrate-bn", action="store_true",
                   help="also report validation after re-estimating BatchNorm statistics on un-augmented "
                        "training images (same run, so the two figures are paired; saved runs keep them)")
    p.add_argument("--separable", action="store_true",
                   help="every conv after the first: a depthwise 3×3 then a 1×1 conv (experiments.SeparableRecordNet)")
    p.add_argument("--teachers", type=Path, nargs="+", default=None,
                   help="distil from these checkpoints (e.g. --save-dir output): their averaged soft predictions")
    p.add_argument("--only-report-teachers", action="store_true",
                   help="print the --teachers' validation figures and stop: no training")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the teachers' term in the loss")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature for distillation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.add_argument("--subset", type=int, default=None, help="train on N images (a smoke test)")
    p.add_argument("--save-dir", type=Path, default=None,
                   help="save each seed's trained model as seed<N>.pth here (mnistlib checkpoints)")
    p.add_argument("--results", type=Path, default=None,
                   help="also add this variant's row to the <recipe>_search table in this results file")
    p.add_argument("--baseline", action="store_true",
                   help="with --results: store this run as the table's baseline (the recipe itself), not as a row")
    p.add_argument("--kind", default="variant", help="with --results: the row's kind (length, optimizer, …)")
    p.add_argument("--change", default=None, help="with --results: the change in words (default: the settings)")
    args = p.parse_args(argv)
    recipe = RECIPES[args.recipe]
    for name in ("epochs", "augment", "lr", "batch_size"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(recipe, name))
    return args


def variant(args: argparse.Namespace) -> tuple[Recipe, Augment]:
    """The recipe with the command line's changes, and the augmentation its training data gets."""
    record = RECIPES[args.recipe]
    options = dict(record.model_options)
    if args.widths:
        options["widths"] = args.widths
    if args.pool_after:
        options["pool_after"] = args.pool_after
    optimizer_options = dict(record.optimizer_options)
    if args.weight_decay is not None:
        optimizer_options["weight_decay"] = args.weight_decay
    augment = get_augment(args.augment)
    if args.scale is not None:
        augment = replace(augment, scale=args.scale)
    if args.elastic is not None:
        augment = replace(augment, elastic=args.elastic)
    model = register_separable() if args.separable else record.model
    recipe = replace(record, name=f"{record.name}-variant", model=model, model_options=options, epochs=args.epochs,
                     lr=args.lr, batch_size=args.batch_size, optimizer_options=optimizer_options, augment=repr(augment))
    return recipe, augment


def describe(args: argparse.Namespace, recipe: Recipe, teachers: list) -> str:
    """The variant in words, for its table row."""
    opts = recipe.model_options
    layout = (f"widths {opts.get('widths', 'default')}, pool after {opts.get('pool_after', 'default')}"
              if recipe.model.startswith("record") else f"{recipe.model} {opts}")
    return (f"{layout}, {args.epochs} epochs, {recipe.augment}, batch {args.batch_size}, max lr {args.lr}"
            f"{f', label smoothing {args.label_smoothing}' if args.label_smoothing else ''}"
            f"{f', weight decay {args.weight_decay}' if args.weight_decay is not None else ''}"
            f"{', separable convs' if args.separable else ''}"
            f"{f', distilled from {len(teachers)} teachers' if teachers else ''}"
            f"{f' (α {args.distill_alpha}, T {args.temperature})' if teachers else ''}")


def run_seed(args: argparse.Namespace, recipe: Recipe, augment: Augment, teachers: list, seed: int) -> dict:
    """Train the variant once; its validation accuracy (and after BatchNorm re-estimation, if asked)."""
    data = get_data(args.batch_size, augment, subset=args.subset, seed=seed, device=args.device)
    data.test = SealedLoader(data.test)  # the search chooses on validation: reading the test set raises
    recal = [RecalibrateBatchNorm(clean_loader(data.train))] if args.recalibrate_bn else []
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing) if args.label_smoothing else None
    if teachers:
        data.train = TeacherTargets(data.train, teachers, args.temperature)
        loss_fn = distillation_loss(data.train, args.distill_alpha)
    t0 = time.perf_counter()
    run = train(recipe, data, callbacks=recal, seed=seed, device=args.device, save=False, verbose=False,
                loss_fn=loss_fn)
    out = {"seed": seed, "val_acc": run.history.val_acc[-1], "seconds": time.perf_counter() - t0,
           "epochs": len(run.history), "recalibrated": recal[0].after if recal else None}
    if args.save_dir is not None:
        hparams = {"recipe": repr(recipe), "seed": seed, "distilled_from": [str(p) for p in args.teachers or []]}
        args.save_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(args.save_dir / f"seed{seed}.pth", run.model, hparams=hparams, history=run.history.to_dict(),
                        mean=data.mean, std=data.std, epoch=len(run.history))
    return out


def table_rows(args: argparse.Namespace, recipe: Recipe, teachers: list, runs: list[dict], params: int) -> list[str]:
    """The variant's markdown row (and the re-estimated row with ``--recalibrate-bn``)."""
    accs = [r["val_acc"] for r in runs]
    rows = [f"| {describe(args, recipe, teachers)} | {params:,} | {' / '.join(f'{a:.2%}' for a in accs)} | "
            f"{statistics.mean(accs):.2%} | {statistics.mean(r['seconds'] for r in runs):.0f} |"]
    if args.recalibrate_bn:
        recal = [r["recalibrated"] for r in runs]
        rows.append(f"| … the same runs, BatchNorm statistics re-estimated on un-augmented training images | "
                    f"{params:,} | {' / '.join(f'{a:.2%}' for a in recal)} | {statistics.mean(recal):.2%} | – |")
    return rows


def add_to_results(path: Path, key: str, row: dict, baseline: bool = False) -> None:
    """Add the run to the ``key`` table in the results file: as its baseline, or as a row measured against
    the baseline's validation accuracy on the same seeds."""
    entry = figures(key, load(path)) if path.exists() and key in load(path) else {"rows": []}
    if baseline:
        entry["baseline"] = row
    else:
        base = dict(zip(entry.get("baseline", {}).get("seeds", []), entry.get("baseline", {}).get("val_acc", []),
                        strict=True))
        if all(s in base for s in row["seeds"]):
            row["delta"] = statistics.mean(row["val_acc"]) - statistics.mean(base[s] for s in row["seeds"])
        entry["rows"] = [*entry.get("rows", []), row]
    save_result(key, entry, path)


def main(argv: list[str] | None = None) -> None:
    """Run the variant on every seed and print its row (the test set stays sealed throughout)."""
    args = parse(argv)
    conditions = Conditions("record_search.py", argv, args.device)
    recipe, augment = variant(args)
    if args.separable:
        register_separable()  # teachers saved from a separable run need the name too
    teachers = [load_checkpoint(path).model for path in args.teachers or []]
    if args.only_report_teachers:
        if not teachers:
            raise SystemExit("record_search.py: --only-report-teachers needs --teachers")
        print(report_teachers(teachers, get_data(args.batch_size, "none").val))
        return
    runs = []
    with threads(args.threads):
        for seed in args.seeds:
            if teachers and seed == args.seeds[0]:
                print(" ", report_teachers(teachers, get_data(args.batch_size, "none").val), flush=True)
            runs.append(run_seed(args, recipe, augment, teachers, seed))
            r = runs[-1]
            print(f"  seed {seed}: validation {r['val_acc']:.2%} after {r['epochs']} epochs, {r['seconds']:.0f} s",
                  flush=True)
            if r["recalibrated"] is not None:
                print(f"  seed {seed}: validation {r['recalibrated']:.2%} after re-estimating BatchNorm statistics",
                      flush=True)
    params = count_parameters(recipe.build())
    for line in table_rows(args, recipe, teachers, runs, params):
        print(line, flush=True)
    if args.results is not None:
        add_to_results(args.results, f"{args.recipe}_search", {
            "kind": args.kind, "change": args.change or describe(args, recipe, teachers), "parameters": params,
            "seeds": args.seeds, "val_acc": [r["val_acc"] for r in runs], "seconds": [r["seconds"] for r in runs],
            "command": conditions.command, "conditions": conditions.finish()}, args.baseline)


if __name__ == "__main__":
    main()
