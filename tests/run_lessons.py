"""Run every lesson as a learner would: full default settings, in order, from a fresh checkpoint folder.

``make test-full`` calls this. No output is compared (the checked outputs come from quick mode);
a lesson fails on any error. Lessons after 03 must have loaded lesson 03's main run — the line
``load_or_train`` prints names the checkpoint and why it was chosen — and nothing else. Every cell
that draws a figure (counted from its source: ``plt.show()``, a ``plot_…`` call, a figure left as the
cell's value) must carry an image in the executed lesson, and no output may print a path of the
machine that ran it. The executed notebooks go to ``--out`` (the book is built from them), with the
seconds each took; the checkpoints the lessons wrote stay in ``--checkpoints`` (the screenshots use them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
USING = re.compile(r"^Using (\S+\.pth) — [^\n]*?\n?[ \t]*\((?P<why>[^()\n]*)\)[ \t]*$", re.MULTILINE)
MAIN_RUN = "the best checkpoint of the run tagged 'lesson-03'"
#: A cell draws a figure when it shows one, calls a plotting helper (a call, not a ``def``), or trains
#: without being told to be quiet (``train``, ``fine_tune`` and anything asked for ``verbose=True`` draw the
#: loss and accuracy curves) …
DRAWS = re.compile(r"plt\.show\(|^(?!\s*def\b).*(?<![\w])(?:\w+\.)?plot_\w+\("
                   r"|^(?!\s*def\b)(?!.*(?:verbose=False|\*\*quiet)).*(?<![\w.])(?:train|fine_tune)\("
                   r"|verbose=True", re.MULTILINE)
#: … unless it is tagged so: its figure lives in a widget (no kernel, no figure on a static page), or it draws
#: only when the learner asks for it (a setting left empty by default).
NO_STATIC_FIGURE = "no-static-figure"


def _text(nb: nbformat.NotebookNode) -> str:
    """Everything the lesson printed (streams and plain-text results)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def wrong_models(nb: nbformat.NotebookNode) -> list[str]:
    """The models a lesson loaded for some other reason than being lesson 03's main run."""
    return [f"{m[1]} ({m['why']})" for m in USING.finditer(_text(nb)) if m["why"] != MAIN_RUN]


def _source(cell: dict) -> str:
    """A cell's code without its comment lines (a comment that names a plotting helper draws nothing)."""
    lines = "".join(cell.get("source", "")).splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def missing_figures(nb: nbformat.NotebookNode) -> list[str]:
    """The cells that draw a figure but show none (or only its ``<Figure size …>`` text), as 'cell N'."""
    bad = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or NO_STATIC_FIGURE in cell.get("metadata", {}).get("tags", []):
            continue
        data = [o.get("data", {}) for o in cell.get("outputs", [])]
        texts = [str(d.get("text/plain", "")) for d in data]
        draws = DRAWS.search(_source(cell)) or any(t.startswith("<Figure size") for t in texts)
        if draws and not any("image/png" in d for d in data):
            bad.append(f"cell {i}")
    return bad


def machine_paths(nb: nbformat.NotebookNode, *roots: str) -> list[str]:
    """The outputs that print one of ``roots`` (the checkout, the temporary folder): 'cell N: …line…'."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
            for line in text.splitlines():
                if any(root and root in line for root in roots):
                    found.append(f"cell {i}: {line.strip()[:120]}")
    return found


def run_lesson(path: Path, out: Path, timeout: int) -> float:
    """Execute one lesson in its own folder; write it to ``out``; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                       ).execute()
    finally:
        nbformat.write(nb, out / path.name)
    seconds = time.perf_counter() - start
    loaded = wrong_models(nb) if path.name[:2] > "03" else []
    if loaded:
        raise RuntimeError(f"it loaded something other than lesson 03's main run: {', '.join(loaded)}")
    blank = missing_figures(nb)
    if blank:
        raise RuntimeError(f"{len(blank)} cell(s) draw a figure but show none ({', '.join(blank)}); "
                           "is MPLBACKEND set to a non-inline backend?")
    paths = machine_paths(nb, str(ROOT), tempfile.gettempdir() + "/", os.environ["MNISTLIB_CHECKPOINTS"])
    if paths:
        raise RuntimeError(f"it prints this machine's paths: {'; '.join(paths[:3])}")
    return seconds


def _count_pngs(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def main(argv: list[str] | None = None) -> int:
    """Run the lessons; print a line per lesson and exit 1 at the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", type=Path, help="notebooks (default: every lesson, in order)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "executed", help="where the executed copies go")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "build" / "checkpoints",
                        help="the lessons' checkpoint folder (emptied first, as on a new machine)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may take")
    args = parser.parse_args(argv)
    lessons = args.lessons or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("MNISTLIB_QUICK", None)
    shutil.rmtree(args.checkpoints, ignore_errors=True)  # fresh, as on a new machine
    args.checkpoints.mkdir(parents=True)
    os.environ["MNISTLIB_CHECKPOINTS"] = str(args.checkpoints.resolve())
    timings = {}
    for path in lessons:
        print(f"{path.name} …", flush=True)
        try:
            timings[path.name] = round(run_lesson(path, args.out, args.timeout), 1)
        except (CellExecutionError, RuntimeError) as exc:
            print(f"FAILED: {path.name}: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
            return 1
        print(f"{path.name}: {timings[path.name]:.0f} s", flush=True)
    (args.out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    figures = {name: _count_pngs(args.out / name) for name in timings}
    print(f"{len(timings)} lessons passed in {sum(timings.values()) / 60:.1f} min (full default settings); "
          f"figures: {', '.join(f'{name[:2]} {n}' for name, n in figures.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
