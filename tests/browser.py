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
