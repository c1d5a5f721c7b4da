"""The drawing pad in a real browser: JupyterLab + headless Chromium.

Starts JupyterLab on a free loopback port with a token and throw-away settings, then:

* opens a copy of ``notebooks/05_draw_a_digit.ipynb``, runs every cell, draws a "1" and a "7" with
  real mouse moves on the canvas and reads the prediction the page shows;
* in Chromium's mobile emulation (a touch tablet), draws with touch events on a pad;
* on a pad in collection mode, saves two labelled drawings with real mouse moves and button clicks,
  then checks the PNG files and the manifest the kernel wrote.

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package (never
``playwright install``); skipped cleanly without them.

Set ``MNISTLIB_PAD_SCREENSHOT=path.png`` to keep the screenshot of the pad (the README's picture), and
``MNISTLIB_COLLECT_SCREENSHOT=path.png`` for the pad in collection mode (lesson 08's picture).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, draw, free_port, keep_screenshot, new_page, screenshot_model
from PIL import Image
from waiting import HANG_S, PAGE_S

from mnistlib.strokes import example_strokes, rasterize

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "05_draw_a_digit.ipynb"
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",  # keep off-screen cells (and the pad) in the page
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",  # no news pop-up, no request to the internet
        "checkForUpdates": False,
    },
}
#: The notebook's kernel has connected and is idle (JupyterLab exposes its app as window.jupyterapp).
KERNEL_READY = """() => {
  const nb = window.jupyterapp.shell.currentWidget;
  const kernel = nb && nb.sessionContext && nb.sessionContext.session
    && nb.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === "connected" && kernel.status === "idle";
}"""
#: Every code cell shows an execution count: "[12]:" (not "[ ]:" or "[*]:").
ALL_CELLS_RAN = """() => {
  // a cell whose input is hidden (the lessons' worked solutions) has an empty prompt; an unrun one says [ ]
  const prompts = [...document.querySelectorAll(".jp-Notebook .jp-CodeCell .jp-InputPrompt")]
    .filter((p) => p.textContent.trim() !== "");
  return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
}"""
UNRAN_PROMPTS = """() => [...document.querySelectorAll(".jp-Notebook .jp-CodeCell")]
  .map((c, i) => [i, (c.querySelector(".jp-InputPrompt") || {}).textContent, c.className])
  .filter(([i, t]) => !/\\[\\d+\\]/.test(t || "")).slice(0, 5)"""
#: A pad in collection mode, saving into {folder}; the lab fixture writes it next to lesson 05.
COLLECT_NOTEBOOK = """from pathlib import Path

from mnistlib.handwriting.collect import CollectingPad
from mnistlib.recipes import load_or_train

pad = CollectingPad(load_or_train(), store=Path({folder!r}))
pad"""
SERVER_START_S = PAGE_S
NOTEBOOK_RUN_S = HANG_S  # a quick model is trained first when there is no checkpoint to copy
PREDICTION_S = PAGE_S



def get_json(url: str, token: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else {}


def newest_checkpoint() -> Path | None:
    try:
        from mnistlib.checkpoints import latest_checkpoint

        return latest_checkpoint()
    except Exception:
        return None


def find_data() -> Path | None:
    try:
        from conftest import find_data_root  # tests/conftest.py

        return find_data_root()
    except Exception:
        return None


@dataclass
class Lab:
    """A running JupyterLab: its address, token, the collection folder, and its log's tail."""

    base: str
    token: str
    digits: Path
    log_tail: object


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab serving a scratch copy of lesson 05 and a collecting pad's notebook."""
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium")
    tmp = tmp_path_factory.mktemp("lab")
    work = tmp / "notebooks"
    (work / "images").mkdir(parents=True)
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    digits = tmp / "my_digits"
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
            "source": COLLECT_NOTEBOOK.format(folder=str(digits))}
    notebook = {"cells": [cell], "metadata": json.loads(NOTEBOOK.read_text())["metadata"],
                "nbformat": 4, "nbformat_minor": 4}
    (work / "collect.ipynb").write_text(json.dumps(notebook))
    if (REPO / "notebooks" / "images" / "pad.png").exists():
        shutil.copy(REPO / "notebooks" / "images" / "pad.png", work / "images" / "pad.png")
    settings = tmp / "settings"
    for rel, values in SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(values))
    checkpoints = tmp / "checkpoints"
    checkpoints.mkdir()
    source = screenshot_model() or newest_checkpoint()
    data = find_data()
    if source is not None:  # a trained model is there: reuse it rather than train a quick one
        shutil.copy(source, checkpoints / source.name)
    elif data is None:
        pytest.skip("neither a checkpoint nor the MNIST files to train a quick model")

    token, port = secrets.token_hex(16), free_port()
    env = dict(os.environ)
    env.update(
        MNISTLIB_QUICK="1",
        MNISTLIB_CHECKPOINTS=str(checkpoints),
        TQDM_DISABLE="1",
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
    )
    env.pop("MPLBACKEND", None)
    if data is not None:
        env["MNISTLIB_DATA"] = str(data)
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
        "--ServerApp.open_browser=False",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers often run as root
    log = (tmp / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        log.flush()
        return (tmp / "jupyterlab.log").read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_tail()}")
            try:
                get_json(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{log_tail()}")
                time.sleep(0.5)
        yield Lab(base, token, digits, log_tail)
    finally:
        try:  # a clean shutdown also stops the kernels it started
            get_json(f"{base}/api/shutdown", token, method="POST")
            proc.wait(timeout=20)
        except Exception:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()



def touch_draw(cdp, canvas_box: dict, strokes, size: int = 280, steps: int = 8) -> None:
    """Draw strokes with a finger: touchstart, touchmoves every few pixels, touchend (Chrome DevTools)."""
    sx, sy = canvas_box["width"] / size, canvas_box["height"] / size
    for stroke in strokes:
        points = [(canvas_box["x"] + x * sx, canvas_box["y"] + y * sy) for x, y in stroke]
        touch(cdp, "touchStart", *points[0])
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            for k in range(1, steps + 1):
                touch(cdp, "touchMove", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)
        touch(cdp, "touchEnd")


def touch(cdp, kind: str, x: float | None = None, y: float | None = None) -> None:
    """One touch event as the touch screen sends it (touchEnd carries no points)."""
    points = [] if x is None else [{"x": x, "y": y}]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def open_and_run(page, lab: Lab, name: str, tmp_path: Path, front_end: str = "lab"):
    """Open notebook ``name`` in JupyterLab (``front_end="lab"``) or Notebook 7 (``"notebook"``), run all
    its cells, and return the locator of the (first) drawing pad."""
    from playwright.sync_api import expect

    # Backstop: should a "Select Kernel" dialog appear anyway, accept the default kernel.
    page.add_locator_handler(
        page.locator(".jp-Dialog").filter(has_text="Select Kernel"),
        lambda dialog: dialog.locator(".jp-mod-accept").click(),
    )
    # A fresh workspace per page, so no tab of an earlier test is restored beside this notebook.
    if front_end == "lab":
        page.goto(f"{lab.base}/lab/workspaces/{secrets.token_hex(4)}/tree/{name}?token={lab.token}")
    else:
        page.goto(f"{lab.base}/notebooks/{name}?token={lab.token}")
    indicator = page.locator(".jp-Notebook-ExecutionIndicator")
    page.wait_for_function("window.jupyterapp !== undefined", timeout=PAGE_S * 1000)
    page.wait_for_function(KERNEL_READY, timeout=PAGE_S * 1000)
    if front_end == "lab":
        expect(indicator).to_have_attribute("data-status", "idle", timeout=PAGE_S * 1000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    try:
        page.wait_for_function(ALL_CELLS_RAN, timeout=NOTEBOOK_RUN_S * 1000)
    except Exception:
        page.screenshot(path=str(tmp_path / "run-all-failed.png"), full_page=True)
        unran = page.evaluate(UNRAN_PROMPTS)
        raise AssertionError(f"the notebook did not finish ({unran}):\n{lab.log_tail()}") from None
    if front_end == "lab":
        expect(indicator).to_have_attribute("data-status", "idle", timeout=PAGE_S * 1000)
    page.wait_for_function(KERNEL_READY, timeout=PAGE_S * 1000)
    errors = page.locator(".jp-OutputArea-output").filter(has_text="Traceback")
    assert errors.count() == 0, errors.all_inner_texts()
    pad = page.locator(".mnist-pad").first
    try:
        pad.scroll_into_view_if_needed(timeout=PREDICTION_S * 1000)
    except Exception:
        page.screenshot(path=str(tmp_path / "no-pad.png"), full_page=True)
        widgets = page.locator(".jp-OutputArea-output").all_inner_texts()
        raise AssertionError(f"no drawing pad on the page; outputs: {widgets}") from None
    return pad


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def test_draw_a_one_and_a_seven_in_jupyterlab(lab, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = new_page(browser, viewport={"width": 1300, "height": 1000})
            pad = open_and_run(page, lab, NOTEBOOK.name, tmp_path)
            prediction = pad.locator(".mnist-pad-prediction")
            # The notebook drew a "1" from code: the page shows it too.
            expect(prediction.locator(".mnist-pad-digit")).to_have_text("1", timeout=PREDICTION_S * 1000)

            canvas = pad.locator("canvas.mnist-pad-canvas")
            for digit in ("1", "7"):
                pad.locator(".mnist-pad-clear").click()
                expect(prediction).to_contain_text("Draw a digit", timeout=PREDICTION_S * 1000)
                box = canvas.bounding_box()
                assert box and box["width"] > 100, box
                draw(page, box, example_strokes(digit))
                expect(prediction.locator(".mnist-pad-digit")).to_have_text(
                    digit, timeout=PREDICTION_S * 1000
                )
                page.wait_for_timeout(300)  # let the bars and the 28×28 image repaint
                shot = tmp_path / f"pad-{digit}.png"
                pad.screenshot(path=str(shot))
                assert shot.stat().st_size > 5000
            if screenshot_model():
                keep_screenshot(tmp_path / "pad-7.png", "MNISTLIB_PAD_SCREENSHOT", screenshot_model())
        finally:
            browser.close()


def test_draw_with_touch_in_mobile_emulation(lab, tmp_path) -> None:
    """A touch tablet as Chromium emulates it: the finger draws a "1", a tap on Clear wipes it."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(**p.devices["Galaxy Tab S4"])  # is_mobile, has_touch
            page = new_page(context)
            assert page.evaluate("() => navigator.maxTouchPoints") > 0
            pad = open_and_run(page, lab, "collect.ipynb", tmp_path)
            prediction = pad.locator(".mnist-pad-prediction")
            canvas = pad.locator("canvas.mnist-pad-canvas")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            assert box and box["width"] > 100, box
            touch_draw(context.new_cdp_session(page), box, example_strokes("1"))
            expect(prediction.locator(".mnist-pad-digit")).to_have_text("1", timeout=PREDICTION_S * 1000)
            pad.locator(".mnist-pad-clear").tap()
            expect(prediction).to_contain_text("Draw a digit", timeout=PREDICTION_S * 1000)
        finally:
            browser.close()


def test_save_two_labelled_drawings(lab, tmp_path) -> None:
    """Collection mode: draw, click the digit; the kernel writes a PNG per drawing and the manifest."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = new_page(browser, viewport={"width": 1300, "height": 1000})
            pad = open_and_run(page, lab, "collect.ipynb", tmp_path)
            prediction = pad.locator(".mnist-pad-prediction")
            prompt = pad.locator(".mnist-pad-prompt")
            expect(prompt).to_contain_text("Next, please draw a 0", timeout=PREDICTION_S * 1000)
            for digit in ("7", "1"):
                draw(page, pad.locator("canvas.mnist-pad-canvas").bounding_box(), example_strokes(digit))
                expect(prediction.locator(".mnist-pad-digit")).to_have_text(digit, timeout=PREDICTION_S * 1000)
                pad.locator(f".mnist-pad-label-{digit}").click()
                expect(prompt).to_contain_text(f"as a {digit}", timeout=PREDICTION_S * 1000)
                expect(prediction).to_contain_text("Draw a digit", timeout=PREDICTION_S * 1000)  # cleared
            expect(pad.locator(".mnist-pad-counts")).to_contain_text("7: 1", timeout=PREDICTION_S * 1000)
            if os.environ.get("MNISTLIB_COLLECT_SCREENSHOT") and screenshot_model():  # lesson 08's picture:
                # a third digit drawn, not yet saved
                draw(page, pad.locator("canvas.mnist-pad-canvas").bounding_box(), example_strokes("7-bar"))
                expect(prediction.locator(".mnist-pad-digit")).to_have_text("7", timeout=PREDICTION_S * 1000)
                page.wait_for_timeout(1500)  # the bar's moves may still be on their way through the kernel
                pad.screenshot(path=str(tmp_path / "collect.png"))
                keep_screenshot(tmp_path / "collect.png", "MNISTLIB_COLLECT_SCREENSHOT", screenshot_model())
        finally:
            browser.close()

    entries = [json.loads(line) for line in (lab.digits / "manifest.jsonl").read_text().splitlines()]
    assert [e["label"] for e in entries] == [7, 1]
    assert len({e["session"] for e in entries}) == 1 and entries[0]["session"]  # one pad, one drawing session
    for entry in entries:
        with Image.open(lab.digits / entry["file"]) as img:
            assert img.size == (280, 280) and img.mode == "L"
            pixels = np.asarray(img)
        assert len(entry["strokes"]) == 1 and len(entry["strokes"][0]) > 10  # real mouse moves, many points
        assert (pixels == 255 - rasterize(entry["strokes"], 280, entry["brush"])).mean() > 0.99
    assert sorted(p.name for p in (lab.digits / "pad").iterdir()) == ["00001_7.png", "00002_1.png"]


def test_draw_in_notebook_7(lab, tmp_path) -> None:
    """The classic-style front end (Notebook 7) shows the same pad, and mouse drawing works there too."""
    pytest.importorskip("notebook", minversion="7", reason="Notebook 7 is not installed")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = new_page(browser, viewport={"width": 1300, "height": 1000})
            pad = open_and_run(page, lab, "collect.ipynb", tmp_path, front_end="notebook")
            assert "/notebooks/" in page.url
            prediction = pad.locator(".mnist-pad-prediction")
            draw(page, pad.locator("canvas.mnist-pad-canvas").bounding_box(), example_strokes("7"))
            expect(prediction.locator(".mnist-pad-digit")).to_have_text("7", timeout=PREDICTION_S * 1000)
        finally:
            browser.close()
