"""The static drawing page in a real browser: headless Chromium draws a 1, a 7 and a 4.

Builds the site (``mnistlib.apps.webpage.build_site``) for a trained quick model, serves it with
Python's ``http.server`` on a free loopback port, and opens it in Debian's ``chromium``: a 1 and a
7 drawn with real mouse moves, a 4 drawn with touch events on an emulated phone. Every request
the page makes is recorded and must stay on 127.0.0.1. Also checks the "draw a digit" state and
that a broken model file shows the load error on the page. Needs ``/usr/bin/chromium`` and the
``playwright`` Python package (never ``playwright install``); skipped cleanly without them.

Set ``MNISTLIB_WEBPAGE_SCREENSHOT=path.png`` to keep the screenshot of the page (the README's picture).
"""

from __future__ import annotations

import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, keep_screenshot, screenshot_model
from waiting import PAGE_S
from webpage_helpers import export_onnx, trained_checkpoint

from mnistlib.apps.webpage import WebPageError, build_site
from mnistlib.strokes import example_strokes

pytestmark = pytest.mark.browser

#: A 4 with an open top, in the 280×280 canvas's pixels (drawn with a finger in the test).
FOUR = [[(110, 45), (90, 160), (205, 160)], [(175, 50), (172, 245)]]
LOAD_S = PAGE_S  # compiling the 15 MB wasm runtime on a slow, busy CPU
ANSWER_S = PAGE_S
EMPTY = re.compile("Draw a digit")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, folder) of a loopback server holding ``site/`` (the page) and ``broken/`` (a bad model)."""
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium")
    ckpt = trained_checkpoint()
    root = tmp_path_factory.mktemp("web")
    try:
        build_site(export_onnx(ckpt.model, root / "exported.onnx"), root / "site", mean=ckpt.mean, std=ckpt.std)
    except WebPageError as exc:
        if "npm is not installed" in str(exc):
            pytest.skip(str(exc))
        raise
    broken = shutil.copytree(root / "site", root / "broken")
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                     timeout=PAGE_S * 1000)
        try:
            yield chromium
        finally:
            chromium.close()


def record_requests(context) -> list[str]:
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))
    return urls


def assert_loopback_only(urls: list[str]) -> None:
    assert urls, "no request recorded"
    for url in urls:
        parts = urlsplit(url)
        local = parts.scheme in ("data", "blob", "file") or parts.hostname == "127.0.0.1"
        assert local, f"request left loopback: {url}"


def open_page(context, url: str):
    from playwright.sync_api import expect

    page = context.new_page()
    page.set_default_timeout(ANSWER_S * 1000)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-state", "ready", timeout=LOAD_S * 1000)
    return page


def answer(page) -> str:
    """The digit the page shows once it has read the finished drawing."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-busy", "false")
    expect(page.locator("#answer")).to_be_visible()
    return page.locator("#digit").inner_text()


def canvas_points(page, stroke):
    """A stroke in canvas pixels → viewport coordinates over the canvas's drawing area."""
    box = page.locator("#pad").evaluate(
        "c => { const r = c.getBoundingClientRect();"
        " return {x: r.left + c.clientLeft, y: r.top + c.clientTop, w: c.clientWidth, h: c.clientHeight}; }"
    )
    return [(box["x"] + x * box["w"] / 280, box["y"] + y * box["h"] / 280) for x, y in stroke]


def draw_with_mouse(page, strokes) -> None:
    for stroke in strokes:
        points = canvas_points(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


def draw_with_finger(page, cdp, strokes, steps: int = 8) -> None:
    """Touch events through Chromium's input pipeline (as a finger on a phone would send them)."""

    def touch(kind: str, *point: float) -> None:
        points = [{"x": point[0], "y": point[1]}] if point else []
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    for stroke in strokes:
        points = canvas_points(page, stroke)
        touch("touchStart", *points[0])
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for i in range(1, steps + 1):
                touch("touchMove", x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
        touch("touchEnd")


def seen_ink(page) -> int:
    """How many pixels of the page's 28×28 'what the model sees' image are lit."""
    return page.locator("#seen").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, 28, 28).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) n += d[i] > 0; return n; }"
    )


def test_a_one_and_a_seven_drawn_with_the_mouse(served, browser, tmp_path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 900, "height": 760})
    urls = record_requests(context)
    try:
        page = open_page(context, f"{served[0]}/site/")
        expect(page.locator("#message")).to_have_text(EMPTY)
        assert seen_ink(page) == 0
        for digit in ("1", "7"):
            page.locator("#clear").click()
            expect(page.locator("#message")).to_have_text(EMPTY)
            draw_with_mouse(page, example_strokes(digit))
            assert answer(page) == digit
            assert page.locator("body").get_attribute("data-pointer") == "mouse"
            assert page.locator(".bar.best").get_attribute("data-digit") == digit
            assert seen_ink(page) > 20
        shot = tmp_path / "webpage.png"
        page.locator("main").screenshot(path=str(shot))
        assert shot.stat().st_size > 5000
        if screenshot_model():
            keep_screenshot(shot, "MNISTLIB_WEBPAGE_SCREENSHOT", screenshot_model())
        page.locator("#clear").click()
        expect(page.locator("#message")).to_have_text(EMPTY)
        expect(page.locator("#answer")).to_be_hidden()
        assert seen_ink(page) == 0
        assert page.locator("#error").is_hidden()
    finally:
        context.close()
    assert_loopback_only(urls)
    assert any(url.endswith("/model.onnx") for url in urls) and any(url.endswith(".wasm") for url in urls)


def test_a_four_drawn_with_a_finger_on_a_phone(served, browser) -> None:
    context = browser.new_context(
        viewport={"width": 412, "height": 860}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    urls = record_requests(context)
    try:
        page = open_page(context, f"{served[0]}/site/")
        draw_with_finger(page, context.new_cdp_session(page), FOUR)
        assert answer(page) == "4"
        assert page.locator("body").get_attribute("data-pointer") == "touch"
        assert page.evaluate("() => window.scrollY") == 0  # the finger drew instead of scrolling
    finally:
        context.close()
    assert_loopback_only(urls)


def test_a_broken_model_says_so_on_the_page(served, browser) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    urls = record_requests(context)
    try:
        page = context.new_page()
        page.goto(f"{served[0]}/broken/")
        expect(page.locator("body")).to_have_attribute("data-state", "error", timeout=LOAD_S * 1000)
        error = page.locator("#error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("Could not load the model")
        expect(page.locator("#message")).to_contain_text("not available")
    finally:
        context.close()
    assert_loopback_only(urls)


def test_opened_as_a_file_the_page_says_to_serve_it(served, browser) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    urls = record_requests(context)
    try:
        page = context.new_page()
        page.goto((served[1] / "site" / "index.html").as_uri())
        expect(page.locator("body")).to_have_attribute("data-state", "error", timeout=LOAD_S * 1000)
        expect(page.locator("#error")).to_contain_text("python -m http.server")
    finally:
        context.close()
    assert_loopback_only(urls)
