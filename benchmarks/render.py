"""Render the measured tables in README.md and benchmarks/README.md from benchmarks/results.json.

Each table sits between ``<!-- results:KEY -->`` and ``<!-- /results:KEY -->``; this script
rewrites what is between them from the results file, so a figure is never typed by hand.
``--check`` changes nothing and fails if a file disagrees (what the tests run).

    python benchmarks/render.py            # after a benchmark wrote new figures
    python benchmarks/render.py --check    # do the READMEs agree with results.json?
    python benchmarks/render.py time_to_99 # print one table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from store import RESULTS_PATH, write_text

from mnistlib.course.results import load, render_blocks, table

REPO = Path(__file__).resolve().parent.parent
FILES = (REPO / "README.md", REPO / "benchmarks" / "README.md")


def stale(files: tuple[Path, ...] = FILES, results: dict | None = None) -> list[Path]:
    """The files whose marked tables differ from what ``results`` renders."""
    results = load() if results is None else results
    return [f for f in files if render_blocks(f.read_text(encoding="utf-8"), results) != f.read_text(encoding="utf-8")]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the marked tables (or check them, or print one)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("key", nargs="?", help="print this key's table instead")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file disagrees")
    p.add_argument("--results", type=Path, default=RESULTS_PATH, help="the results file (default: %(default)s)")
    args = p.parse_args(argv)
    results = load(args.results)
    if args.key:
        print(table(args.key, results))
        return 0
    out_of_date = stale(FILES, results)
    if args.check:
        for f in out_of_date:
            print(f"{f.relative_to(REPO)} disagrees with {args.results.name}: run python benchmarks/render.py")
        return 1 if out_of_date else 0
    for f in out_of_date:
        write_text(f, render_blocks(f.read_text(encoding="utf-8"), results))
        print(f"rendered {f.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
