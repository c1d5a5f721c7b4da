"""Holding Ctrl-C (SIGINT) and SIGTERM back while something must not be cut in half, and a quiet
Ctrl-C while a command line program is still starting (importing PyTorch takes seconds)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

__all__ = ["STARTED_ENV", "deferred_signals", "entry_module", "quiet_startup", "startup_done"]

#: For tests only: a file that :func:`quiet_startup` creates once Ctrl-C is handled, so a test can
#: interrupt a starting program at a moment it can observe instead of after a guessed delay.
STARTED_ENV = "MNISTLIB_TEST_STARTED"


def entry_module(orig_argv: Sequence[str]) -> str | None:
    """The module a ``python [options] -m MODULE …`` command line runs, or None (a script, ``-c``, none)."""
    takes_value = {"-W", "-X", "--check-hash-based-pycs"}
    args = iter(orig_argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None)
        if arg.startswith("-m") and not arg.startswith("--"):
            return arg[2:]
        if arg in takes_value:
            next(args, None)
        elif arg == "-c" or not arg.startswith("-") or arg == "-":
            return None
    return None


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C while starting: nothing has been written yet, so stop at once, with one line."""
    os.write(2, b"interrupted\n")
    os._exit(130)


def quiet_startup(modules: Sequence[str]) -> bool:
    """When this process is ``python -m`` one of ``modules``, make Ctrl-C end it at once with the one
    line ``interrupted`` (exit code 130) until :func:`startup_done`, instead of a traceback from
    whatever import it cuts short. Returns whether it did. Called first thing by ``mnistlib/__init__``."""
    if entry_module(getattr(sys, "orig_argv", [])) not in modules:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGINT, _exit_interrupted)
    flag = os.environ.get(STARTED_ENV)
    if flag:
        with contextlib.suppress(OSError):
            open(flag, "a").close()  # noqa: SIM115 - created, not written
    return True


def startup_done() -> None:
    """The program is about to do its work: Ctrl-C raises ``KeyboardInterrupt`` again (its handlers
    stop cleanly, keeping what they wrote). Does nothing unless :func:`quiet_startup` acted."""
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
