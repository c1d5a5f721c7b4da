"""Write a lesson's exercises and quiz into its notebook (the rest of the lesson is the notebook itself).

    python -m mnistlib.course.insert notebooks/03_training.ipynb 3
    python -m mnistlib.course.insert notebooks/03_training.ipynb 3 --sections exercises,quiz
    python -m mnistlib.course.insert notebooks/03_training.ipynb 3 --check   # exit 1 if it would change

Every generated cell carries the tag ``lesson-<section>``; those tags are the markers. A section
already in the notebook is replaced where it stands (so the cells can be moved in JupyterLab and
stay there); a new one goes before the lesson's recap (the cell tagged ``lesson-recap``), else at the
end, exercises before the quiz. Running it twice gives the same file; ``--check`` tells whether a
notebook is up to date with its material (a test runs it on every lesson).

Each exercise becomes: prompt (markdown) → starter cell (the learner's; "not tried yet" until
edited, never an error) → check cell → a note → the worked solution (hidden in JupyterLab:
``jupyter.source_hidden``; tag ``solution`` for the book) → the check again with ``strict=True``,
so a notebook run (nbval) fails if a solution stops passing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistlib._support.files import write_text
from mnistlib.course.exercises.core import LEVELS, Exercise, LessonMaterial

from .exercises import material

__all__ = ["SECTIONS", "InsertError", "section_cells", "insert_material", "insert_file", "main"]

SECTIONS = ("exercises", "quiz")
TAG_PREFIX = "lesson-"
SOLUTION_TAG = "solution"
STARS = {1: "★", 2: "★★", 3: "★★★"}
Cell = dict[str, Any]


class InsertError(ValueError):
    """A notebook that cannot take the material (not a notebook, unknown section)."""


def _lines(text: str) -> list[str]:
    return text.strip("\n").splitlines(keepends=True)


def _md(text: str, section: str) -> Cell:
    return {"cell_type": "markdown", "metadata": {"tags": [TAG_PREFIX + section]}, "source": _lines(text)}


def _code(text: str, section: str, *tags: str, hidden: bool = False) -> Cell:
    meta: dict[str, Any] = {"tags": [*tags, TAG_PREFIX + section]}
    if hidden:
        meta["jupyter"] = {"source_hidden": True}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": _lines(text)}


def _exercise_cells(m: LessonMaterial, index: int, ex: Exercise) -> list[Cell]:
    number = f"{m.number}.{index}"
    call = f"ex.{ex.check_name}({ex.answer})"
    return [
        _md(f"### Exercise {number} · {ex.title} {STARS[ex.level]}\n\n{ex.prompt_md}", "exercises"),
        _code(ex.starter, "exercises", "exercise"),
        _code(call, "exercises"),
        _md(
            f"*Worked solution {number}* — the next cell is collapsed: click its bar to open it. Running it "
            "replaces your answer with the solution; the check after it must then say ✓.",
            "exercises",
        ),
        _code(ex.solution, "exercises", SOLUTION_TAG, hidden=True),
        _code(f"ex.{ex.check_name}({ex.answer}, strict=True)  # the worked solution passes", "exercises"),
    ]


def _exercises(m: LessonMaterial) -> list[Cell]:
    levels = " · ".join(f"{STARS[k]} {v}" for k, v in LEVELS.items())
    intro = (
        "## Exercises\n\n"
        "Write your answer in the cell under each exercise, run it, then run the check below it: it says "
        "**✓ right**, **✗ not yet** with a hint, or **… not tried yet**. The checks never look at the test set. "
        f"Difficulty: {levels}."
    )
    package, module = m.module.rsplit(".", 1)
    cells = [_md(intro, "exercises"), _code(f"from {package} import {module} as ex", "exercises")]
    for i, ex in enumerate(m.exercises, 1):
        cells += _exercise_cells(m, i, ex)
    return cells


def section_cells(m: LessonMaterial, section: str) -> list[Cell]:
    """The cells of one section of lesson ``m``."""
    if section == "exercises":
        return _exercises(m)
    if section == "quiz":
        quiz = (
            f"# NBVAL_IGNORE_OUTPUT\nfrom mnistlib.course.exercises import lesson{m.number:02d}\n\n"
            f"lesson{m.number:02d}.quiz()"
        )
        intro = "## Quiz\n\nAnswer each question before you look at its answer: every answer comes with an explanation."
        return [_md(intro, "quiz"), _code(quiz, "quiz")]
    raise InsertError(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")


def _section_of(cell: Cell) -> str | None:
    for tag in cell.get("metadata", {}).get("tags", []):
        if tag.startswith(TAG_PREFIX) and tag[len(TAG_PREFIX) :] in SECTIONS:
            return tag[len(TAG_PREFIX) :]
    return None


def _with_ids(cells: list[Cell], section: str) -> list[Cell]:
    """nbformat ≥ 4.5 wants cell ids: derive them from the content, so a rerun gives the same ids."""
    for i, cell in enumerate(cells):
        digest = hashlib.sha1(f"{section}:{i}:{''.join(cell['source'])}".encode()).hexdigest()
        cell["id"] = f"{section[:4]}-{digest[:12]}"
    return cells


def insert_material(nb: dict[str, Any], lesson: int | str, sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """A copy of notebook ``nb`` with the lesson's sections put in (replacing any earlier version)."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise InsertError("not a Jupyter notebook (no list of cells)")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise InsertError(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    m = material(lesson)
    nb = json.loads(json.dumps(nb))
    needs_ids = (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)
    for section in [s for s in SECTIONS if s in sections]:
        new = section_cells(m, section)
        if needs_ids:
            new = _with_ids(new, section)
        cells = nb["cells"]
        where = [i for i, c in enumerate(cells) if _section_of(c) == section]
        if where:
            at = where[0]
        else:
            recap = [i for i, c in enumerate(cells) if TAG_PREFIX + "recap" in c.get("metadata", {}).get("tags", [])]
            at = recap[0] if recap else len(cells)
        kept = [c for c in cells if _section_of(c) != section]
        at -= sum(1 for i in where if i < at)
        nb["cells"] = kept[:at] + new + kept[at:]
    return nb


def _dumps(nb: dict[str, Any]) -> str:
    """The repository's notebook format (as .ci/clean_notebooks.py writes it)."""
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def insert_file(path: str | Path, lesson: int | str, sections: Sequence[str] = SECTIONS, check: bool = False) -> bool:
    """Insert the material into the notebook at ``path``; True if the file changed (or would, with ``check``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise InsertError(f"cannot read notebook {path}: {exc}") from None
    new = _dumps(insert_material(nb, lesson, sections))
    changed = new != text
    if changed and not check:
        mode = path.stat().st_mode & 0o777
        write_text(path, new)
        os.chmod(path, mode)  # a rewritten lesson keeps its permissions
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnistlib.course.insert", description=__doc__.split("\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("lesson", help="lesson number, e.g. 3 or 03")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from: {', '.join(SECTIONS)}")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the notebook would change")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    try:
        changed = insert_file(args.notebook, args.lesson, sections, check=args.check)
    except (InsertError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = ("would change" if changed else "up to date") if args.check else ("updated" if changed else "unchanged")
    print(f"{args.notebook}: {verb} ({', '.join(sections)})")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
