"""Build the series as a static HTML book from executed notebooks, fully offline.

The notebooks are never executed here: their stored outputs (every figure) are rendered by
mkdocs + mkdocs-jupyter (``execute: false``) with the Material theme. Before rendering, a copy
of each notebook is prepared for a page without a kernel:

* widget outputs lose their widget view (it needs a kernel and a CDN script) and keep a static
  version — a quiz its answers-in-``<details>`` HTML, any other widget a one-line note;
* maths (``$…$``, ``$$…$$``) becomes MathML, which browsers render natively: no MathJax;
* headings lose their backticks (the table of contents would drop the words inside them);
* worked solutions (tag ``solution``, or ``jupyter.source_hidden``) are wrapped in a closed
  ``<details>`` after rendering; links between lessons point at their pages.

The site is built next to ``out`` and swapped in at the end, so an interrupted build leaves the
previous site as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mnistlib.config import REPO_ROOT

__all__ = ["BookError", "Lesson", "BuildResult", "find_lessons", "prepare_notebook", "markdown_maths", "build"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<p class="mnist-widget-note">An interactive widget is here when the lesson runs in JupyterLab '
    "(it needs a live Python kernel).</p>"
)
SOLUTION_TAG = "solution"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
DEFAULT_NOTEBOOKS = Path("build/executed")
HOW_TO_RUN = "run `make test-full` first (it writes build/executed/), or pass --notebooks DIR"


class BookError(RuntimeError):
    """The book cannot be built (no notebooks, a broken notebook, mkdocs failed); one line why."""


@dataclass(frozen=True)
class Lesson:
    """One lesson page: its notebook, number, slug (page folder), title and one-line summary."""

    path: Path
    number: int
    slug: str
    title: str
    summary: str


@dataclass(frozen=True)
class BuildResult:
    site: Path
    lessons: tuple[Lesson, ...]
    seconds: float


# --------------------------------------------------------------------------------------------
# Reading the lessons


def _read(path: Path) -> dict[str, Any]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BookError(f"cannot read notebook {path}: {exc}") from None
    if not isinstance(nb.get("cells"), list):
        raise BookError(f"{path} is not a Jupyter notebook (no cells)")
    return nb


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _first_heading(nb: dict[str, Any]) -> tuple[str, str]:
    """(H1 title, first paragraph after it) of a notebook."""
    for cell in nb["cells"]:
        if cell.get("cell_type") != "markdown":
            continue
        text = _source(cell).strip()
        match = re.match(r"#\s+(.+)", text)
        if match:
            rest = [p.strip() for p in text[match.end() :].split("\n\n") if p.strip()]
            return match.group(1).strip(), (rest[0] if rest else "")
    return "", ""


def _summary(nb: dict, paragraph: str) -> str:
    """One line for the landing page: the first paragraph of the lesson's opening (the cell tagged
    ``lesson-opening``) without its 'What you will learn:' lead, else the paragraph under the title."""
    opening = next((_source(c).strip() for c in nb["cells"]
                    if "lesson-opening" in c.get("metadata", {}).get("tags", [])), "")
    first = " ".join(opening.split("\n\n")[0].split())
    lead = re.match(r"^\*\*(In this lesson|What you will learn:?)\*\*:?\s*(you will\s*)?", first)
    if lead:
        text = first[lead.end():]
        return text[:1].upper() + text[1:]
    flat = " ".join(paragraph.split())
    return flat if len(flat) <= 220 else flat[:217].rsplit(" ", 1)[0] + " …"


def _short_title(number: int, heading: str) -> str:
    """'Lesson 03 — Training: …' or '07 · Inside …' → 'Training: …' (the page title stays as written)."""
    title = re.sub(r"^(lesson\s*)?0?\d+\s*[·—:.-]\s*", "", heading, flags=re.IGNORECASE).strip()
    return title or f"Lesson {number:02d}"


def find_lessons(folder: str | Path) -> list[Lesson]:
    """The lessons (``NN_name.ipynb``) in ``folder``, in order."""
    folder = Path(folder)
    paths = sorted(folder.glob(LESSON_GLOB)) if folder.is_dir() else []
    if not paths:
        raise BookError(f"no executed lessons (NN_name.ipynb) in {folder}: {HOW_TO_RUN}")
    lessons = []
    for path in paths:
        number = int(path.name[:2])
        nb = _read(path)
        heading, paragraph = _first_heading(nb)
        lessons.append(Lesson(path, number, path.stem, _short_title(number, heading), _summary(nb, paragraph)))
    return lessons


# --------------------------------------------------------------------------------------------
# Preparing one notebook for a page without a kernel

_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE = re.compile(r"(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\w$])")


def _mathml(latex: str, display: bool) -> str | None:
    from latex2mathml.converter import convert

    try:
        return convert(latex.strip(), display="block" if display else "inline")
    except Exception:  # unsupported LaTeX: leave the source visible rather than fail the build
        return None


def markdown_maths(text: str) -> str:
    """Replace ``$$…$$`` and ``$…$`` maths outside code with MathML (browsers render it natively)."""

    def convert(part: str) -> str:
        part = _DISPLAY.sub(lambda m: _mathml(m.group(1), True) or m.group(0), part)
        return _INLINE.sub(lambda m: _mathml(m.group(1), False) or m.group(0), part)

    pieces = _CODE.split(text)
    return "".join(p if i % 2 else convert(p) for i, p in enumerate(pieces))


def _plain_headings(text: str) -> str:
    """Drop backticks from heading lines: mkdocs-jupyter's table of contents deletes `code` spans."""
    return re.sub(r"^(#{1,6}\s.*)$", lambda m: m.group(1).replace("`", ""), text, flags=re.MULTILINE)


def _static_output(output: dict[str, Any]) -> dict[str, Any]:
    data = output.get("data")
    if not isinstance(data, dict) or WIDGET_VIEW not in data:
        return output
    data = {k: v for k, v in data.items() if k != WIDGET_VIEW}
    if "text/html" not in data:
        data = {"text/html": WIDGET_NOTE}
    return {**output, "data": data}


def _without_test_markers(source: str) -> str:
    """A code cell's source without nbval's ``# NBVAL_…`` marker lines: they are for the tests, not the reader."""
    return "".join(line for line in source.splitlines(keepends=True) if not line.lstrip().startswith("# NBVAL_"))


def prepare_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``nb`` ready for static HTML: no widget state or views, MathML maths, solutions tagged."""
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        meta = cell.setdefault("metadata", {})
        if cell.get("cell_type") == "markdown":
            cell["source"] = _plain_headings(markdown_maths(_source(cell)))
        elif cell.get("cell_type") == "code":
            cell["source"] = _without_test_markers(_source(cell))
            cell["outputs"] = [_static_output(o) for o in cell.get("outputs", [])]
            tags = meta.setdefault("tags", [])
            if meta.get("jupyter", {}).get("source_hidden") and SOLUTION_TAG not in tags:
                tags.append(SOLUTION_TAG)
    return nb


# --------------------------------------------------------------------------------------------
# Staging, mkdocs, and the finishing touches


def _landing_page(lessons: Sequence[Lesson]) -> str:
    rows = "\n".join(f"| {le.number:02d} | [{le.title}]({le.slug}.ipynb) | {le.summary} |" for le in lessons)
    return (
        "# mnist-lessons\n\n"
        "A hands-on series that builds a handwritten-digit recognizer with a convolutional network, end to end: "
        "from the raw MNIST files to a digit you draw yourself.\n\n"
        "These pages show every lesson **executed at its full default settings**, with all its figures. To change "
        "a number and run a lesson yourself, open the notebooks in JupyterLab (`make lab` in the repository). "
        "Worked solutions and quiz answers are folded away: click to open them.\n\n"
        f"| # | lesson | what you will do |\n|---|---|---|\n{rows}\n"
    )


def _stage(lessons: Sequence[Lesson], source: Path, root: Path) -> Path:
    """Write the mkdocs project (config, prepared notebooks, landing page, assets) into ``root``."""
    docs = root / "docs"
    (docs / "assets").mkdir(parents=True)
    for lesson in lessons:
        text = json.dumps(prepare_notebook(_read(lesson.path)), ensure_ascii=False)
        (docs / lesson.path.name).write_text(text, encoding="utf-8")
    (docs / "index.md").write_text(_landing_page(lessons), encoding="utf-8")
    package = resources.files("mnistlib.course.book")
    (docs / "assets" / "book.css").write_bytes(package.joinpath("assets/book.css").read_bytes())
    for images in (source / "images", REPO_ROOT / "notebooks" / "images"):
        if images.is_dir():
            shutil.copytree(images, docs / "images", dirs_exist_ok=True)
    config = yaml.safe_load(package.joinpath("mkdocs.yml").read_text(encoding="utf-8"))
    config["nav"] = [{"Home": "index.md"}] + [{f"{le.number:02d} · {le.title}": le.path.name} for le in lessons]
    path = root / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _run_mkdocs(config: Path, site: Path) -> None:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--quiet", "--clean", "-f", str(config), "-d", str(site)]
    done = subprocess.run(cmd, cwd=config.parent, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise BookError("mkdocs build failed:\n" + "\n".join(tail))


_LESSON_LINK = re.compile(r"^(?:\.{1,2}/)*(?:notebooks/)?(\d\d_[\w-]+)\.ipynb(#.*)?$")


def _finish_page(html: str, slugs: set[str]) -> str:
    """Collapse solutions into <details>, point lesson links at pages and images at the site root."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for cell in soup.select(f"div.jp-Cell.celltag_{SOLUTION_TAG}"):
        if cell.find_parent("div", class_=f"celltag_{SOLUTION_TAG}"):
            continue  # mkdocs-jupyter nests nbconvert's cell div in one of its own: wrap the outer one
        details = soup.new_tag("details", attrs={"class": "mnist-solution"})
        summary = soup.new_tag("summary")
        summary.string = "Worked solution (click to show)"
        cell.wrap(details)
        details.insert(0, summary)
    for a in soup.select(".jupyter-wrapper a[href]"):
        match = _LESSON_LINK.match(a["href"])
        if match and match.group(1) in slugs:
            a["href"] = f"../{match.group(1)}/{match.group(2) or ''}"
    for img in soup.select(".jupyter-wrapper img[src]"):
        if not re.match(r"^(?:[a-z]+:|/|\.\./|#)", img["src"]):
            img["src"] = "../" + img["src"]
    for script in soup.select('script[src=""]'):  # nbconvert's MathJax tag with no URL
        script.decompose()
    return str(soup)


def _finish(site: Path, lessons: Sequence[Lesson]) -> None:
    slugs = {le.slug for le in lessons}
    for lesson in lessons:
        page = site / lesson.slug / "index.html"
        if not page.is_file():
            raise BookError(f"mkdocs wrote no page for {lesson.path.name} ({page})")
        page.write_text(_finish_page(page.read_text(encoding="utf-8"), slugs), encoding="utf-8")


def build(notebooks: str | Path = DEFAULT_NOTEBOOKS, out: str | Path = "build/site") -> BuildResult:
    """Build the book from the executed lessons in ``notebooks`` into ``out`` (replaced at the end)."""
    start = time.perf_counter()
    source, out = Path(notebooks).resolve(), Path(out).resolve()
    lessons = find_lessons(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        site = Path(tmp) / "site"
        _run_mkdocs(_stage(lessons, source, Path(tmp) / "project"), site)
        _finish(site, lessons)
        old = Path(tmp) / "old"
        if out.exists():
            out.rename(old)
        site.rename(out)
    return BuildResult(out, tuple(lessons), time.perf_counter() - start)
