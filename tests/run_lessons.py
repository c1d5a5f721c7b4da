"""Run every lesson as a learner would: full default settings, in order, from a fresh checkpoint folder.

``make test-full`` calls this. No output is compared (the checked outputs come from quick mode);
a lesson fails on any error. Lessons after 03 must have loaded lesson 03's main run — the line
``load_or_train`` prints names the checkpoint and why it was chosen — and nothing else. The
executed notebooks go to ``--out`` (the book is built from them), with the seconds each took.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
USING = re.compile(r"^Using (\S+\.pth) — .*\((?P<why>[^()]*)\)\s*$", re.MULTILINE)
MAIN_RUN = "the best checkpoint of the run tagged 'lesson-03'"


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
        raise RuntimeError(f"{path.name} loaded something other than lesson 03's main run: {', '.join(loaded)}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the lessons; print a line per lesson and exit 1 at the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", type=Path, help="notebooks (default: every lesson, in order)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "executed", help="where the executed copies go")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may take")
    args = parser.parse_args(argv)
    lessons = args.lessons or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("MNISTLIB_QUICK", None)
    os.environ["MNISTLIB_CHECKPOINTS"] = tempfile.mkdtemp(prefix="mnistlib-full-")  # fresh, as on a new machine
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
    print(f"{len(timings)} lessons passed in {sum(timings.values()) / 60:.1f} min (full default settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
