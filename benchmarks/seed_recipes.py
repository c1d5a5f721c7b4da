"""Train every seed recipe in full and tabulate its measured test accuracy beside its claim.

Each recipe runs through ``mnistlib.training.fit`` with its own batch size, learning rate,
schedule, augmentation and epochs on the 55,000-image training split; the checkpoint is chosen on
the 5,000-image validation split and the test set is read once, at the end, to score it
(see ``mnistlib.evaluation.compare_recipes``). Not part of CI: it took 13 minutes on a shared
2-core CPU with one thread (on a CPU that other jobs share, more threads than free cores slow
PyTorch down a lot).

    MNISTLIB_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/seed_recipes.py --out seed_recipes.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import torch
from mnistlib.fast import cpu_name

from mnistlib.evaluation import compare_recipes, format_table
from mnistlib.recipes import SEED_RECIPES


def machine() -> str:
    """One line about where this ran: CPU/GPU, threads, torch version, date."""
    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    return (f"{os.cpu_count()}-core CPU ({cpu}){gpu}, torch {torch.__version__} with "
            f"{threads} thread{'s' if threads != 1 else ''}, {dt.date.today().isoformat()}")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the recipes, print the table and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table to this file")
    parser.add_argument("--recipes", nargs="*", default=list(SEED_RECIPES), choices=list(SEED_RECIPES),
                        help="which recipes (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (default: its own)")
    parser.add_argument("--subset", type=int, default=None, help="train on this many images (default: all 55,000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rows = compare_recipes(args.recipes, epochs_override=args.epochs, subset=args.subset,
                           seed=args.seed, device=args.device, verbose=not args.quiet)
    total = time.perf_counter() - start
    command = "python benchmarks/seed_recipes.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (f"{format_table(rows)}\n\n"
            f"Measured on: {machine()}; {total / 60:.1f} minutes in all.\n"
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command.strip()}`\n")
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
