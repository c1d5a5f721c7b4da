"""Train every source project's recipe in full and tabulate its measured test accuracy beside its claim.

Each recipe runs through ``mnistlib.recipes.train`` with its own batch size, learning rate,
schedule, augmentation and epochs on the 55,000-image training split; the checkpoint is chosen on
the 5,000-image validation split and the test set, sealed until then, is read once at the end to
score it (``mnistlib.compare.compare_recipes``). The figures go to ``benchmarks/results.json``
under ``"seed_recipes"``. Not part of CI: about 10 minutes on a 2-core CPU with one thread (on a
CPU other jobs share, more threads than free cores slow PyTorch down a lot).

    MNISTLIB_DATA=/path/to/data OMP_NUM_THREADS=1 nice -n 5 python benchmarks/seed_recipes.py --threads 1
    python benchmarks/seed_recipes.py --smoke --results /tmp/results.json     # seconds: checks it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from machine import Conditions, load_average
from store import RESULTS_PATH, save_result

from mnistlib.compare import compare_recipes, recipe_table
from mnistlib.devices import threads
from mnistlib.recipes import SEED_RECIPES


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="*", default=list(SEED_RECIPES), choices=list(SEED_RECIPES),
                   help="which recipes (default: all)")
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (default: its own)")
    p.add_argument("--subset", type=int, default=None, help="train on this many images (default: all 55,000)")
    p.add_argument("--smoke", action="store_true", help="seconds: 256 images, one epoch (tests)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--results", type=Path, default=None,
                   help="write the figures here (default: benchmarks/results.json for a full run of every "
                        "recipe; a partial or --smoke run writes nowhere unless given)")
    args = p.parse_args(argv)
    if args.smoke:
        args.subset, args.epochs = args.subset or 256, args.epochs or 1
    full = args.recipes == list(SEED_RECIPES) and args.epochs is None and args.subset is None and args.seed == 0
    args.results = args.results or (RESULTS_PATH if full else None)
    return args


def main(argv: list[str] | None = None) -> int:
    """Train the recipes, print the table, and store it in the results file."""
    args = parse(argv)
    conditions = Conditions("seed_recipes.py", argv, args.device)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("subset", args.subset)) if v is not None}
    with threads(args.threads):
        print(f"load average before: {load_average()}", flush=True)
        rows = compare_recipes(args.recipes, seed=args.seed, device=args.device, verbose=not args.quiet, **overrides)
        entry = {"rows": [dataclasses.asdict(r) for r in rows], "conditions": conditions.finish()}
    c = entry["conditions"]
    print(f"\n{recipe_table(rows)}\n\nload average {c['load_before']} before, {c['load_after']} after; "
          f"{c['minutes']} minutes. Command: `{c['command']}`")
    if args.results is not None:
        print(f"written to {save_result('seed_recipes', entry, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
