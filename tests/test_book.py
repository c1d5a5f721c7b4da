"""The book's build steps without a browser: preparing notebooks, maths, finishing pages, errors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from mnistlib.course.book import BookError, build, find_lessons, markdown_maths, prepare_notebook
from mnistlib.course.book.__main__ import main
from mnistlib.course.book.build import WIDGET_NOTE, WIDGET_VIEW, _finish_page
from mnistlib.course.exercises import material


def test_maths_becomes_mathml_but_code_is_left_alone() -> None:
    text = "Softmax: $p_k = e^{z_k}$ and\n\n$$\\sum_j p_j = 1$$\n\n`x = $HOME` and ```\ncost $5 $6\n```"
    out = markdown_maths(text)
    assert out.count("<math") == 2 and 'display="block"' in out and 'display="inline"' in out
    assert "`x = $HOME`" in out and "cost $5 $6" in out
    assert markdown_maths("it costs $5 or $6 today") == "it costs $5 or $6 today"  # prices are not maths


def _nb(cells: list[dict], **meta) -> dict:
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 4}


def test_prepare_replaces_widget_views_and_tags_hidden_solutions() -> None:
    quiz_html = material(1).make_quiz().static_html()
    cells = [
        {"cell_type": "markdown", "metadata": {},
         "source": ["# T\n", "$x^2$\n", "## `fit`: the loop\n", "`code` stays"]},
        {"cell_type": "code", "metadata": {}, "source": "w", "outputs": [
            {"output_type": "display_data", "metadata": {},
             "data": {WIDGET_VIEW: {"model_id": "a"}, "text/plain": "VBox()"}},
            {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
             "data": {WIDGET_VIEW: {"model_id": "b"}, "text/plain": "Quiz", "text/html": quiz_html}},
        ]},
        {"cell_type": "code", "metadata": {"jupyter": {"source_hidden": True}}, "source": "s", "outputs": []},
    ]
    nb = _nb(cells, widgets={"application/vnd.jupyter.widget-state+json": {}})
    out = prepare_notebook(nb)
    assert "widgets" not in out["metadata"] and "widgets" in nb["metadata"]  # a copy
    widget, quiz = out["cells"][1]["outputs"]
    assert widget["data"] == {"text/html": WIDGET_NOTE}
    assert WIDGET_VIEW not in quiz["data"] and quiz["data"]["text/html"] == quiz_html
    assert out["cells"][2]["metadata"]["tags"] == ["solution"]
    assert "<math" in out["cells"][0]["source"]
    assert "## fit: the loop\n`code` stays" in out["cells"][0]["source"]


def test_finishing_wraps_each_solution_once_and_fixes_links() -> None:
    page = (
        '<article><div class="jupyter-wrapper">'
        '<div class="jp-Cell celltag_solution"><div class="jp-Cell celltag_solution"><pre>answer</pre></div></div>'
        '<a href="03_training.ipynb#the-loop">next</a><a href="../notebooks/09_unknown.ipynb">x</a>'
        '<img src="images/pad.png"><img src="data:image/png;base64,AA=="></div></article>'
    )
    html = _finish_page(page, {"03_training", "02_architecture"})
    assert html.count("<details") == 1 and "<summary>Worked solution" in html
    assert 'href="../03_training/#the-loop"' in html and 'href="../notebooks/09_unknown.ipynb"' in html
    assert 'src="../images/pad.png"' in html and 'src="data:image/png' in html


def test_no_notebooks_says_how_to_make_them(tmp_path: Path, capsys) -> None:
    with pytest.raises(BookError, match="make test-full"):
        find_lessons(tmp_path)
    assert main(["build", "--notebooks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "site")]) == 2
    assert "make test-full" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def _png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_build_a_tiny_book_and_rebuild_over_it(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs_jupyter", reason="mkdocs-jupyter is not installed")
    src = tmp_path / "executed"
    src.mkdir()
    for number, title in ((1, "Lesson 01 — Data"), (2, "02 · Shapes")):
        cells = [
            {"cell_type": "markdown", "metadata": {}, "source": f"# {title}\n\nIntro with [next](02_b.ipynb)."},
            {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "plot()",
             "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/png": _png()}}]},
        ]
        (src / f"0{number}_{'ab'[number - 1]}.ipynb").write_text(json.dumps(_nb(cells)))
    site = tmp_path / "site"
    site.mkdir()
    (site / "stale.html").write_text("old")
    result = build(src, site)
    assert [le.slug for le in result.lessons] == ["01_a", "02_b"]
    assert not (site / "stale.html").exists() and (site / "index.html").is_file()
    page = (site / "01_a" / "index.html").read_text()
    assert "data:image/png;base64" in page and 'href="../02_b/"' in page
    assert "mnist-lessons" in (site / "index.html").read_text() and (site / "search" / "search_index.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "the temporary build folder is gone"


def test_the_book_hides_the_tests_markers() -> None:
    from mnistlib.course.book.build import prepare_notebook

    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "source": "# NBVAL_CHECK_OUTPUT\nprint(1)\n"}
    nb = prepare_notebook({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 4})
    assert nb["cells"][0]["source"] == "print(1)\n"
