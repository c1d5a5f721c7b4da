"""Project hygiene: one dependency set in both install routes, clean notebooks, lint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda package name → PyPI name


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower()


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + extras["book"] + extras["test"]
    return {_name(s): s.replace(" ", "") for s in specs}


def _conda() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if spec.startswith("-") or _name(spec) in ("python", "pip"):
                continue
            name = CONDA_NAMES.get(_name(spec), _name(spec))
            out[name] = name + spec[len(_name(spec)):].replace(" ", "")
    return out


def test_environment_yml_matches_pyproject() -> None:
    pip, conda = _pyproject(), _conda()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}"
    )
    assert pip == conda, "version bounds differ between pyproject.toml and environment.yml"


def test_environment_yml_installs_the_project() -> None:
    assert "-e ." in (ROOT / "environment.yml").read_text()


def test_notebooks_are_clean() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no lessons found"
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "clean_notebooks.py"), "--check", *map(str, notebooks)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cleaner_keeps_checked_outputs_as_one_block_per_stream() -> None:
    """The kernel splits printed text into chunks by timing; the cleaner joins them, so diffs show content."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("clean_notebooks", ROOT / ".ci" / "clean_notebooks.py")
    cleaner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cleaner)

    def stream(name: str, text: str) -> dict:
        return {"output_type": "stream", "name": name, "text": [text], "metadata": {}}

    checked = {"cell_type": "code", "source": ["# NBVAL_CHECK_OUTPUT\nprint(1)"], "metadata": {}, "execution_count": 7,
               "outputs": [stream("stdout", "a\n"), stream("stdout", "b\nc\n"), stream("stderr", "warn\n"),
                           stream("stdout", "d\n")]}
    other = {"cell_type": "code", "source": ["print(2)"], "metadata": {}, "execution_count": 8,
             "outputs": [stream("stdout", "x\n")]}
    nb = cleaner.clean({"cells": [checked, other], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    first, second = nb["cells"]
    assert first["execution_count"] == 1 and second["execution_count"] is None and second["outputs"] == []
    assert first["outputs"] == [{"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n", "c\n", "d\n"]}]


def test_lessons_are_numbered() -> None:
    names = [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    assert all(re.match(r"0[1-9]_[a-z_]+\.ipynb$", n) for n in names), names


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    result = subprocess.run([ruff, "check", "mnistlib", "tests", "benchmarks", ".ci"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_full_run_checker_flags_a_lesson_that_loaded_another_model() -> None:
    """``make test-full`` fails when a later lesson used anything but lesson 03's main run."""
    import nbformat

    sys.path.insert(0, str(ROOT / "tests"))
    from run_lessons import wrong_models

    def lesson(line: str) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell("load_or_train()", outputs=[nbformat.v4.new_output("stream", text=line)])
        return nbformat.v4.new_notebook(cells=[cell])

    good = "Using best_model_20261202_1.pth — batchnorm, epoch 5 (the best checkpoint of the run tagged 'lesson-03')\n"
    bad = "Using best_model_20261202_2.pth — batchnorm, epoch 1 (no run tagged 'lesson-03': trained now)\n"
    assert wrong_models(lesson(good)) == []
    assert wrong_models(lesson(bad)) == ["best_model_20261202_2.pth (no run tagged 'lesson-03': trained now)"]
    # load_or_train prints the reason on a second line, so that neither line is wider than a book page
    two_lines = "Using best_model_20261202_2.pth — batchnorm, epoch 1, validation accuracy 97.00%\n  (as asked)\n"
    assert wrong_models(lesson(two_lines)) == ["best_model_20261202_2.pth (as asked)"]
    assert wrong_models(lesson(good.replace(" (the", "\n  (the"))) == []


def test_full_run_checker_flags_a_figure_cell_without_its_figure() -> None:
    """``make test-full`` fails when a cell that draws a figure shows none — counted from the source."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    sys.path.insert(0, str(ROOT / "tests"))
    from run_lessons import missing_figures

    png = new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480 with 1 Axes>"})
    text_only = new_output("execute_result", data={"text/plain": "<Figure size 640x480 with 1 Axes>"})
    cells = [
        new_code_cell("fig, ax = plt.subplots()\nplt.show()", outputs=[png]),  # fine
        new_code_cell("plt.show()"),  # Agg: nothing came out
        new_code_cell("plot_history(run.history)", outputs=[text_only]),  # a returned figure, shown as text
        new_code_cell("def plot_it(x):\n    return x"),  # defines a helper: draws nothing
        new_code_cell("fig"),  # no plotting call in the source, but its output says it was a figure
        new_code_cell("explorer.show()\nplt.show()", metadata={"tags": ["no-static-figure"]}),  # in a widget
        new_code_cell("run = train(recipe, data)"),  # training draws its curves
        new_code_cell("tuned = fine_tune(ckpt, images, labels)"),
        new_code_cell("net.train()\nrun = train(recipe, data, verbose=False)"),  # a mode switch; a quiet run
        new_code_cell("m = train_with_augmentation(name, verbose=True)"),
        new_code_cell("print(best)\n# plot_history(history) redraws the curves above"),  # a comment draws nothing
    ]
    cells[4].outputs = [text_only]
    assert missing_figures(new_notebook(cells=cells)) == ["cell 1", "cell 2", "cell 4", "cell 6", "cell 7", "cell 9"]
    assert nbformat.validate(new_notebook(cells=cells)) is None


def test_full_run_checker_flags_machine_paths() -> None:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    sys.path.insert(0, str(ROOT / "tests"))
    from run_lessons import machine_paths

    cell = new_code_cell("print(path)", outputs=[new_output("stream", text=f"saved {ROOT}/checkpoints/x.pth\nok\n")])
    assert machine_paths(new_notebook(cells=[cell]), str(ROOT)) == [f"cell 0: saved {ROOT}/checkpoints/x.pth"]
    assert machine_paths(new_notebook(cells=[cell]), "/elsewhere") == []


def test_pictures_show_lesson_03s_model() -> None:
    """README's and the lessons' screenshots were taken by the browser tests from lesson 03's own run
    (``make screenshots``), not from some other model: each names the model it shows."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import MODEL_FIELD

    pictures = sorted((ROOT / "notebooks" / "images").glob("*.png"))
    assert pictures
    for picture in pictures:
        with Image.open(picture) as img:
            shows = img.text.get(MODEL_FIELD, "")
        assert "tag=lesson-03 " in shows, f"{picture.name} shows {shows or 'an unnamed model'}: run make screenshots"


def test_make_lab_allows_root_only_for_root() -> None:
    """Jupyter refuses to run as root without --allow-root (containers, cloud machines): make lab adds it."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True)
    line = next(line for line in dry.stdout.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in line) == (os.geteuid() == 0)
