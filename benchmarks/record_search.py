"""Try a variant of the record recipe and print its validation accuracy — the test set is never scored.

This is how the record recipe in ``mnistlib.fast.FAST_RECIPES["record"]`` was chosen: each variant
trains with ``mnistlib.training.fit`` once per seed and reports the validation accuracy after its last
epoch, one markdown table row per variant. Only ``benchmark.py --record`` reads the test set, once,
for the recipe this search picked.

    MNISTLIB_DATA=/path/to/data python benchmarks/record_search.py --epochs 25 --scale 0.1 --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from mnistlib.data import get_augment, get_data
from mnistlib.fast import FAST_RECIPES
from mnistlib.models import count_parameters, get_model
from mnistlib.training import evaluate, fit, recalibrate_batchnorm


def main(argv: list[str] | None = None) -> None:
    record = FAST_RECIPES["record"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="RecordNet filter counts")
    parser.add_argument("--pool-after", type=int, nargs="+", default=None, help="conv indices followed by a max-pool")
    parser.add_argument("--epochs", type=int, default=record.epochs)
    parser.add_argument("--augment", default=record.augment, help="a named augmentation (mnistlib.data)")
    parser.add_argument("--scale", type=float, default=None, help="add a random zoom of up to ± this fraction")
    parser.add_argument("--elastic", type=float, default=None, help="add an elastic warp of up to this many pixels")
    parser.add_argument("--lr", type=float, default=record.lr)
    parser.add_argument("--batch-size", type=int, default=record.batch_size)
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="fit's label_smoothing")
    parser.add_argument("--weight-decay", type=float, default=None, help="SGD's weight decay")
    parser.add_argument("--recalibrate-bn", action="store_true",
                        help="also report validation after re-estimating BatchNorm statistics on un-augmented "
                             "training images (same run, so the two figures are paired)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--subset", type=int, default=None, help="train on N images (a smoke test)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    options = dict(record.model_options)
    if args.widths:
        options["widths"] = args.widths
    if args.pool_after:
        options["pool_after"] = args.pool_after
    augment = get_augment(args.augment)
    if args.scale is not None:
        augment = replace(augment, scale=args.scale)
    if args.elastic is not None:
        augment = replace(augment, elastic=args.elastic)
    kwargs = record.fit_kwargs() | {"epochs": args.epochs, "lr": args.lr}
    if args.label_smoothing:
        kwargs["label_smoothing"] = args.label_smoothing
    if args.weight_decay is not None:
        kwargs["optimizer_options"] = kwargs["optimizer_options"] | {"weight_decay": args.weight_decay}
    kwargs.pop("augment", None)
    kwargs.pop("batch_size", None)

    accs, recal_accs, seconds, params = [], [], [], 0
    for seed in args.seeds:
        data = get_data(args.batch_size, augment, subset=args.subset, seed=seed)
        torch.manual_seed(seed)
        model = get_model(record.model, **options)
        params = count_parameters(model)
        t0 = time.perf_counter()
        history = fit(model, data, **kwargs, seed=seed, save_checkpoints=False, progress=False, verbose=False)
        seconds.append(time.perf_counter() - t0)
        accs.append(history.val_acc[-1])
        print(f"  seed {seed}: validation {accs[-1]:.2%} after {len(history.epoch)} epochs, {seconds[-1]:.0f} s",
              flush=True)
        if args.recalibrate_bn:
            recalibrate_batchnorm(model, data.train.without_augmentation())
            recal_accs.append(evaluate(model, data.val)[1])
            print(f"  seed {seed}: validation {recal_accs[-1]:.2%} after re-estimating BatchNorm statistics",
                  flush=True)
    mean = statistics.mean(accs)
    print(f"| widths {options.get('widths', 'default')}, pool after {options.get('pool_after', 'default')}, "
          f"{args.epochs} epochs, {augment}, batch {args.batch_size}, max lr {args.lr}"
          f"{f', label smoothing {args.label_smoothing}' if args.label_smoothing else ''}"
          f"{f', weight decay {args.weight_decay}' if args.weight_decay is not None else ''} | {params:,} | "
          f"{' / '.join(f'{a:.2%}' for a in accs)} | {mean:.2%} | {statistics.mean(seconds):.0f} |", flush=True)
    if recal_accs:
        print(f"| … the same runs, BatchNorm statistics re-estimated on un-augmented training images | {params:,} | "
              f"{' / '.join(f'{a:.2%}' for a in recal_accs)} | {statistics.mean(recal_accs):.2%} | – |", flush=True)


if __name__ == "__main__":
    main()
