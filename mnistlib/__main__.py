"""Command line: ``python -m mnistlib data import DIR`` (and train / evaluate / predict).

Bad arguments or files end with exit code 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import DATA_ENV, data_root


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


def _data_import(args: argparse.Namespace) -> int:
    from .data import IDXFormatError, import_idx

    try:
        target = import_idx(args.source, args.root)
    except (IDXFormatError, OSError) as exc:
        raise CLIError(str(exc)) from None
    print(f"imported the four MNIST files into {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m mnistlib", description="MNIST lessons: data, training and prediction."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="manage the MNIST files in the data root")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    imp = data_sub.add_parser(
        "import",
        help="copy the four MNIST IDX files (plain or .gz) from a folder into the data root",
        description=f"Validate and copy MNIST IDX files into the data root "
        f"(${DATA_ENV}, now {data_root()}). Nothing is written unless all four are valid.",
    )
    imp.add_argument("source", help="folder holding train-images-idx3-ubyte[.gz] and the others")
    imp.add_argument("--root", default=None, help=f"data root to import into (default: ${DATA_ENV})")
    imp.set_defaults(func=_data_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
