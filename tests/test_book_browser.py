"""The HTML book in headless Chromium: every lesson page renders, shows its figures and no errors,
keeps solutions and quiz answers folded, and loads nothing from beyond 127.0.0.1.

Where the book's notebooks come from:

* ``MNISTLIB_BOOK_NOTEBOOKS=DIR``, or ``build/executed/`` (what ``make test-full`` writes): the
  whole series, as ``make book`` builds it;
* otherwise two lessons executed here in quick mode (01 and 02, lesson 02 with its exercises and
  quiz inserted), which takes well under a minute.

Needs Debian's ``chromium`` and the ``playwright`` package (never ``playwright install``).
Set ``MNISTLIB_BOOK_SCREENSHOTS=DIR`` to keep a screenshot of every page.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, new_page
from run_lessons import missing_figures
from waiting import PAGE_S

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
QUICK_LESSONS = ("01_data_and_augmentation.ipynb", "02_architecture.ipynb")


def _executed_folder() -> Path | None:
    env = os.environ.get("MNISTLIB_BOOK_NOTEBOOKS")
    folder = Path(env) if env else REPO / "build" / "executed"
    return folder if any(folder.glob("[0-9][0-9]_*.ipynb")) else None


def _execute_quick(tmp: Path) -> Path:
    """Run two lessons in quick mode into ``tmp/executed`` (lesson 02 with its material inserted)."""
    from conftest import find_data_root  # tests/conftest.py

    from mnistlib.course.book.execute import execute_notebook
    from mnistlib.course.insert import insert_file

    data = find_data_root()
    if data is None:
        pytest.skip("no executed notebooks (make test-full) and no MNIST files to execute two lessons")
    src = tmp / "lessons"
    src.mkdir()
    for name in QUICK_LESSONS:
        shutil.copy(REPO / "notebooks" / name, src / name)
    insert_file(src / QUICK_LESSONS[1], 2)
    saved = dict(os.environ)
    os.environ.update(MNISTLIB_QUICK="1", MNISTLIB_DATA=str(data), MNISTLIB_CHECKPOINTS=str(tmp / "checkpoints"),
                      TQDM_DISABLE="1", PYTHONPATH=os.pathsep.join(
                          [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    try:
        for name in QUICK_LESSONS:
            execute_notebook(src / name, tmp / "executed", timeout=300)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return tmp / "executed"


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Iterator[tuple[str, Path, list]]:
    """Build the book and serve it on a free loopback port: (base URL, site folder, lessons)."""
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    pytest.importorskip("mkdocs_jupyter", reason="mkdocs-jupyter is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium")
    from mnistlib.course.book import build

    tmp = tmp_path_factory.mktemp("book")
    notebooks = _executed_folder() or _execute_quick(tmp)
    result = build(notebooks, tmp / "site")
    handler = functools.partial(_QuietHandler, directory=str(result.site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", result.site, list(result.lessons)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def browser(book):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, url: str, base: str):
    """A page at ``url`` that records every request leaving the loopback server."""
    page = new_page(browser, viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    local = (base, "data:", "blob:", "about:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    page.goto(url, wait_until="networkidle", timeout=PAGE_S * 1000)
    return page, outside


def _png_outputs(path: Path) -> int:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


def test_landing_page_lists_every_lesson_and_search_works(book, browser) -> None:
    base, _, lessons = book
    page, outside = _open(browser, base + "/", base)
    try:
        for lesson in lessons:
            link = page.locator(f'article a[href^="{lesson.slug}/"]')
            assert link.count() >= 1, f"no link to {lesson.slug} on the landing page"
        page.locator(".md-search__input").click()
        page.keyboard.type("receptive", delay=50)  # real key presses: the search reacts to key events
        page.wait_for_selector(".md-search-result__item", timeout=PAGE_S * 1000)
        assert "receptive" in page.locator(".md-search-result").inner_text().lower()
        assert outside == [], outside
    finally:
        page.close()


def test_every_lesson_page_renders_with_figures_no_errors_and_folded_answers(book, browser) -> None:
    base, site, lessons = book
    keep = os.environ.get("MNISTLIB_BOOK_SCREENSHOTS")
    for i, lesson in enumerate(lessons):
        page, outside = _open(browser, f"{base}/{lesson.slug}/", base)
        try:
            assert lesson.title.split(":")[0] in page.locator("article h1").first.inner_text()
            assert page.locator(".jp-Cell").count() > 5, "the notebook's cells are not on the page"
            assert missing_figures(nbformat.read(lesson.path, as_version=4)) == [], "a cell lost its figure"
            images = page.locator(".jupyter-wrapper img")
            assert images.count() >= _png_outputs(lesson.path), "a figure is missing"
            wrapping = page.locator(".jp-OutputArea-output pre").evaluate_all(
                "els => els.filter(e => getComputedStyle(e).whiteSpace !== 'pre').length")
            assert wrapping == 0, "text outputs must scroll, not wrap (aligned tables break)"
            tables = page.locator(".jp-OutputArea-output table, .jp-RenderedMarkdown table").evaluate_all(
                "els => els.filter(e => getComputedStyle(e).overflowX !== 'auto').length")
            assert tables == 0, "a wide table must scroll inside the page"
            sizes = images.evaluate_all("els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            assert all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
            errors = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')
            texts = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error:" in t]
            assert not texts, texts[:2]
            for details in page.locator("details.mnist-solution, .mnist-quiz-static details").all():
                assert details.get_attribute("open") is None
            hidden_code = page.locator("details.mnist-solution .jp-InputArea")
            assert all(not el.is_visible() for el in hidden_code.all()), "a solution is shown unfolded"
            if hidden_code.count():  # a solution opens on click
                page.locator("details.mnist-solution > summary").first.click()
                assert hidden_code.first.is_visible()
            assert not page.locator("text=/Error displaying widget|model not found/").count()
            assert outside == [], outside
            if i + 1 < len(lessons):  # navigation to the next lesson
                assert page.locator(f'a.md-footer__link--next[href*="{lessons[i + 1].slug}"]').count() == 1
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(keep) / f"{lesson.slug}.png"), full_page=True)
        finally:
            page.close()


def test_quiz_and_solutions_are_in_the_quick_book(book, browser) -> None:
    """The two-lesson book has lesson 02's exercises and quiz: answers folded, checks rendered."""
    base, _, lessons = book
    lesson = next((le for le in lessons if le.number == 2), None)
    if lesson is None or "lesson-exercises" not in lesson.path.read_text(encoding="utf-8"):
        pytest.skip("lesson 02 in this book has no exercises inserted yet")
    page, outside = _open(browser, f"{base}/{lesson.slug}/", base)
    try:
        assert page.locator("details.mnist-solution").count() >= 3
        quiz = page.locator(".mnist-quiz-static")
        assert quiz.count() == 1 and quiz.locator("details").count() >= 5
        first = quiz.locator("details").first
        assert not first.locator("ul").is_visible()
        first.locator("summary").click()
        assert first.locator("ul").is_visible()
        assert page.locator(".mnist-check-right").count() >= 3  # the strict checks after the solutions
        assert page.locator(".mnist-check-todo").count() >= 3  # the untouched starters
        assert outside == [], outside
    finally:
        page.close()


def test_site_references_no_other_host_for_scripts_styles_or_images(book) -> None:
    """Static scan: every script, stylesheet and image the pages load is local."""
    import re

    _, site, _ = book
    pattern = re.compile(
        r'<(?:script|img|iframe)[^>]+src="(https?:[^"]+)"|<link[^>]+rel="stylesheet"[^>]+href="(https?:[^"]+)"'
    )
    offenders = [
        (p.relative_to(site), m.group(0)[:120]) for p in site.rglob("*.html") for m in pattern.finditer(p.read_text())
    ]
    assert not offenders, offenders
