"""The generator that writes exercises and quizzes into the lesson notebooks, and the check that they agree."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from exercise_code import run_code

from mnistlib.course.exercises import LESSONS, material
from mnistlib.course.insert import SECTIONS, InsertError, insert_file, insert_material, main

REPO = Path(__file__).resolve().parent.parent
LESSON = REPO / "notebooks" / "02_architecture.ipynb"


def _cleaner():
    spec = importlib.util.spec_from_file_location("clean_notebooks", REPO / ".ci" / "clean_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    """Lesson 02 as it was before its exercises and quiz were inserted (the generated cells taken out)."""
    copy = tmp_path / LESSON.name
    nb = json.loads(LESSON.read_text())
    nb["cells"] = [c for c in nb["cells"] if not {"lesson-exercises", "lesson-quiz"} & set(_tags(c))]
    copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return copy


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_inserts_every_section_and_is_idempotent(notebook: Path) -> None:
    before = json.loads(notebook.read_text())
    assert insert_file(notebook, 2) is True
    once = notebook.read_text()
    assert insert_file(notebook, 2) is False
    assert notebook.read_text() == once
    nb = json.loads(once)
    m = material(2)
    assert len(nb["cells"]) == len(before["cells"]) + (2 + 6 * len(m.exercises)) + 2
    order = [next(t for t in _tags(c) if t.startswith("lesson-")) for c in nb["cells"] if any(
        t.startswith("lesson-") for t in _tags(c))]
    generated = [t for t in order if t in ("lesson-exercises", "lesson-quiz")]
    assert list(dict.fromkeys(generated)) == ["lesson-exercises", "lesson-quiz"]
    if "lesson-recap" in order:  # new sections go before the recap
        assert order.index("lesson-recap") > len(order) - 1 - order[::-1].index("lesson-quiz")
    assert [c for c in nb["cells"] if not {"lesson-exercises", "lesson-quiz"} & set(_tags(c))] == before["cells"]


def test_notebook_stays_clean_and_solutions_stay_hidden(notebook: Path) -> None:
    insert_file(notebook, 2)
    nb = json.loads(notebook.read_text())
    cleaner = _cleaner()
    assert cleaner.dumps(cleaner.clean(nb)) == notebook.read_text(), "the cleaner would rewrite it"
    solutions = [c for c in nb["cells"] if "solution" in _tags(c)]
    assert len(solutions) == len(material(2).exercises)
    for cell in solutions:
        assert cell["cell_type"] == "code"
        assert cell["metadata"]["jupyter"] == {"source_hidden": True}


def test_cell_order_per_exercise_makes_the_solution_check_pass(notebook: Path) -> None:
    """Run each exercise's code cells in notebook order, as nbval would: nothing raises, the starter's
    check says 'not tried yet', the strict check after the solution passes."""
    insert_file(notebook, 3)
    nb = json.loads(notebook.read_text())
    cells = [c for c in nb["cells"] if "lesson-exercises" in _tags(c) and c["cell_type"] == "code"]
    namespace: dict = {}
    exec("".join(cells[0]["source"]), namespace)  # the import cell
    results = []
    for cell in cells[1:]:
        source = "".join(cell["source"])
        last = source.strip().splitlines()[-1]
        exec(source, namespace)
        if last.startswith("ex.check_"):
            results.append(eval(last.split("#")[0], namespace).status)
    assert results == ["todo", "right"] * len(material(3).exercises)


def test_rerun_replaces_a_section_where_it_was_moved(notebook: Path) -> None:
    insert_file(notebook, 2, sections=["quiz"])
    nb = json.loads(notebook.read_text())
    where = [i for i, c in enumerate(nb["cells"]) if "lesson-quiz" in _tags(c)]
    quiz = [nb["cells"][i] for i in where]
    nb["cells"] = [c for i, c in enumerate(nb["cells"]) if i not in where]
    nb["cells"][3:3] = quiz  # the author moved it up
    notebook.write_text(json.dumps(nb))
    insert_file(notebook, 2, sections=["quiz"])
    nb = json.loads(notebook.read_text())
    assert "lesson-quiz" in _tags(nb["cells"][3]) and "lesson-quiz" in _tags(nb["cells"][4])
    assert sum("lesson-quiz" in _tags(c) for c in nb["cells"]) == 2


def test_only_the_chosen_sections(notebook: Path) -> None:
    insert_file(notebook, 2, sections=["quiz"])
    nb = json.loads(notebook.read_text())
    tags = {t for c in nb["cells"] for t in _tags(c) if t in ("lesson-exercises", "lesson-quiz")}
    assert tags == {"lesson-quiz"}
    quiz_code = next(c for c in nb["cells"] if "lesson-quiz" in _tags(c) and c["cell_type"] == "code")
    assert "".join(quiz_code["source"]).startswith("# NBVAL_IGNORE_OUTPUT")
    assert repr(run_code("".join(quiz_code["source"]).replace("lesson02.quiz()", "q = lesson02.quiz()"), "q"))


def test_nbformat_45_cells_get_stable_ids(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# T"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    a, b = insert_material(nb, 1), insert_material(insert_material(nb, 1), 1)
    assert a == b
    ids = [c["id"] for c in a["cells"]]
    assert len(set(ids)) == len(ids)


def test_keeps_the_file_mode(notebook: Path) -> None:
    notebook.chmod(0o640)
    insert_file(notebook, 2)
    assert stat.S_IMODE(notebook.stat().st_mode) == 0o640
    assert not [p for p in notebook.parent.iterdir() if p.name.startswith(".")]


def test_bad_input_gets_one_line_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(InsertError, match="cannot read notebook"):
        insert_file(bad, 2)
    with pytest.raises(InsertError, match="unknown section 'extras'"):
        insert_material({"cells": []}, 2, ["extras"])
    assert main([str(tmp_path / "missing.ipynb"), "2"]) == 2
    assert main([str(LESSON), "12"]) == 2
    err = capsys.readouterr().err
    assert "lessons are 01" in err and err.count("\n") == 2


def test_command_line_check_mode(notebook: Path, capsys) -> None:
    assert main([str(notebook), "02", "--check"]) == 1
    assert main([str(notebook), "02"]) == 0 and "updated" in capsys.readouterr().out
    assert main([str(notebook), "02", "--check"]) == 0
    done = subprocess.run([sys.executable, "-m", "mnistlib.course.insert", str(notebook), "2"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "unchanged" in done.stdout
    assert set(SECTIONS) == {"exercises", "quiz"}


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_lesson_notebook_matches_its_material(lesson: int) -> None:
    """The drift check on the real notebooks: each lesson's exercises and quiz are what its material says."""
    notebook = next((REPO / "notebooks").glob(f"{lesson:02d}_*.ipynb"))
    assert insert_file(notebook, lesson, check=True) is False, (
        f"{notebook.name} differs from mnistlib/course/exercises/lesson{lesson:02d}.py: run "
        f"python -m mnistlib.course.insert {notebook.relative_to(REPO)} {lesson}")
