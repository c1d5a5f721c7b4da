"""Holding Ctrl-C (SIGINT) and SIGTERM back while something must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["deferred_signals"]


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block Ctrl-C (SIGINT) and SIGTERM wait: they are delivered when it ends.

    Wrapped around a checkpoint write, so an interrupt can never cost the file being written.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)
