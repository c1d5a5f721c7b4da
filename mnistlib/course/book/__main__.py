"""Command line: ``python -m mnistlib.course.book {build,serve,execute}`` (see ``--help``)."""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
from collections.abc import Sequence
from pathlib import Path

from .build import DEFAULT_NOTEBOOKS, BookError, build


def _build(args: argparse.Namespace) -> int:
    result = build(args.notebooks, args.out)
    print(f"built {len(result.lessons)} lessons into {result.site}/ in {result.seconds:.1f} s")
    print(f"open it with: python -m mnistlib.course.book serve {result.site}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    site = Path(args.site)
    if not (site / "index.html").is_file():
        raise BookError(f"no book in {site}/: build it first (make book)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"serving {site}/ at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _execute(args: argparse.Namespace) -> int:
    from .execute import execute_notebook

    for source in args.notebooks:
        print(f"executed {execute_notebook(source, args.out, args.timeout)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnistlib.course.book",
                                     description="The lessons as a static HTML book.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the site from executed notebooks (offline)")
    b.add_argument("--notebooks", type=Path, default=DEFAULT_NOTEBOOKS, help="folder of executed NN_name.ipynb")
    b.add_argument("--out", type=Path, default=Path("build/site"), help="the site folder (replaced)")
    b.set_defaults(func=_build)
    s = sub.add_parser("serve", help="serve a built site on 127.0.0.1")
    s.add_argument("site", type=Path, nargs="?", default=Path("build/site"))
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=_serve)
    e = sub.add_parser("execute", help="run notebooks top to bottom into a folder, outputs kept")
    e.add_argument("notebooks", type=Path, nargs="+")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    e.set_defaults(func=_execute)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
