"""What every browser test shares: Debian's Chromium and its flags, a free loopback port, real mouse strokes."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from waiting import PAGE_S

with contextlib.suppress(ImportError):  # Playwright's assertions wait for what they check: let a busy machine be slow
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_S * 1000)

CHROMIUM = Path("/usr/bin/chromium")
#: Flags that work here (PITFALLS): no sandbox as root, and none of Chromium's own traffic to the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def new_page(owner, **kwargs):
    """A page of ``owner`` (a browser or a context) that waits up to PAGE_S for anything before calling it a hang."""
    page = owner.new_page(**kwargs)
    page.set_default_timeout(PAGE_S * 1000)
    return page


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def draw(page, box: dict, strokes, size: int = 280) -> None:
    """Draw strokes given in canvas pixels (a ``size``-pixel square) with real mouse moves over ``box``."""
    sx, sy = box["width"] / size, box["height"] / size
    for stroke in strokes:
        points = [(box["x"] + x * sx, box["y"] + y * sy) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


#: ``MNISTLIB_SCREENSHOT_MODEL=path``: the checkpoint the browser tests use when they keep screenshots for the
#: README and the lessons (``make screenshots`` points it at lesson 03's run), so every picture shows that model.
SCREENSHOT_MODEL_ENV = "MNISTLIB_SCREENSHOT_MODEL"
#: The PNG text field that names the model a kept screenshot shows (a test checks the committed pictures).
MODEL_FIELD = "mnistlib-model"


def screenshot_model() -> Path | None:
    """The checkpoint to show in kept screenshots, or None (each test then uses its own small model)."""
    import os

    value = os.environ.get(SCREENSHOT_MODEL_ENV)
    return Path(value) if value else None


def describe_model(path: Path) -> str:
    """'best_model_….pth tag=lesson-03 val_acc=0.9921' for a checkpoint file."""
    from mnistlib.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    return f"{path.name} tag={ckpt.hparams.get('tag', '')} val_acc={ckpt.best_val_acc or float('nan'):.4f}"


def keep_screenshot(shot: Path, env: str, model: Path) -> None:
    """Copy ``shot`` to the path in ``$env`` (if set), stamped with the model it shows."""
    import os

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    keep = os.environ.get(env)
    if not keep:
        return
    info = PngInfo()
    info.add_text(MODEL_FIELD, describe_model(model))
    Path(keep).parent.mkdir(parents=True, exist_ok=True)
    with Image.open(shot) as img:
        img.save(keep, pnginfo=info)
