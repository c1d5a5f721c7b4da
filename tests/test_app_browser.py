"""Lesson 09's drawing web app in a real browser: Streamlit + headless Chromium draw a "1" and a "7".

Starts the app with ``python -m mnistlib.apps.webapp`` (what ``make app`` runs) on a free loopback port
with a small model trained in the fixture, draws with real mouse moves on the canvas, uploads a file
that is not an image, and checks that stopping the server leaves no process behind. Needs Debian's
``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package (never ``playwright install``).

Set ``MNISTLIB_APP_SCREENSHOT=path.png`` to keep a screenshot of the app (the README's picture).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, draw, free_port, keep_screenshot, new_page, screenshot_model
from waiting import PAGE_S

from mnistlib.strokes import example_strokes

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SERVER_START_S = PAGE_S
PREDICTION_MS = PAGE_S * 1000
CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"



def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher (it stops the server); the whole process group as a backstop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def app(tmp_path_factory, data_root):
    """The app serving a small trained checkpoint; yields (url, launcher process, log reader)."""
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if importlib.util.find_spec("streamlit_drawable_canvas") is None:  # importing it outside a server fails
        pytest.skip("streamlit-drawable-canvas is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium")
    from small_models import save_small, train_small

    tmp = tmp_path_factory.mktemp("app")
    os.environ.setdefault("MNISTLIB_DATA", str(data_root))
    shown = screenshot_model()  # the README's picture shows lesson 03's model; a small one serves the test
    if shown is not None:
        (tmp / "checkpoints").mkdir(parents=True)
        ckpt = Path(shutil.copy(shown, tmp / "checkpoints" / shown.name))
    else:
        ckpt = save_small(tmp / "checkpoints" / "best_model_20000101_000000.pth", train_small("batchnorm", 6_000))
    port = free_port()
    env = {**os.environ, "MNISTLIB_CHECKPOINTS": str(tmp / "checkpoints"), "HOME": str(tmp),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MNISTLIB_APP_MODEL", None)
    log_path = tmp / "app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mnistlib.apps.webapp", "--port", str(port), "--no-browser"],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield url, proc, ckpt, lambda: log_path.read_text(errors="replace")[-3000:]
    finally:
        stop(proc)



def test_draw_upload_and_stop(app, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, proc, ckpt, log_tail = app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = new_page(browser, viewport={"width": 1200, "height": 900})
            page.goto(url)
            expect(page.locator(IDLE)).to_have_count(1, timeout=PREDICTION_MS)
            expect(page.get_by_text(ckpt.name)).to_have_count(1, timeout=PREDICTION_MS)  # the caption names it
            prediction = page.locator(".st-key-drawing-result .mnist-app-prediction")
            expect(prediction).to_contain_text("Draw a digit", timeout=PREDICTION_MS)
            for digit in ("1", "7"):
                canvas = page.locator(CANVAS)
                expect(canvas).to_be_visible(timeout=PREDICTION_MS)
                box = canvas.bounding_box()
                assert box and box["width"] > 100, box
                draw(page, box, example_strokes(digit))
                expect(prediction).to_have_attribute("data-digit", digit, timeout=PREDICTION_MS)
                expect(prediction).to_contain_text(f"I read: {digit}")
                expect(page.locator(".st-key-drawing-result img")).to_have_count(1)  # the 28×28 image
                page.mouse.move(5, 880)  # off the canvas: its toolbar hides
                page.wait_for_timeout(500)  # let the chart paint
                if digit == "7":
                    clip = {"x": 0, "y": 90, "width": 1200, "height": 620}
                    page.screenshot(path=str(tmp_path / "app.png"), clip=clip)
                page.get_by_role("button", name="Clear").click()
                expect(prediction).to_contain_text("Draw a digit", timeout=PREDICTION_MS)

            notes = tmp_path / "notes.txt"
            notes.write_text("this is not a picture of a digit\n")
            page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(notes))
            expect(page.get_by_text("notes.txt is not an image file Pillow can read.")).to_be_visible(
                timeout=PREDICTION_MS)
        except Exception as exc:
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            raise AssertionError(f"{exc}\nscreenshot: {tmp_path / 'failed.png'}; app log:\n{log_tail()}") from None
        finally:
            browser.close()
    if screenshot_model():
        keep_screenshot(tmp_path / "app.png", "MNISTLIB_APP_SCREENSHOT", screenshot_model())

    stop(proc)
    assert proc.returncode is not None
    assert not group_alive(proc.pid), "the app left a process behind"
