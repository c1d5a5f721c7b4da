"""One-line messages from long exceptions, and silencing a noisy library for a block (the ONNX exporter)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["first_line", "root_cause_line", "quiet_output", "tolerant_output"]


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (its type's name when it has none), cut at ``limit``."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:limit]


def tolerant_output() -> None:
    """Let stdout and stderr print any name: bytes of a file name that are not UTF-8 (or not in the
    terminal's encoding) come out escaped (``\\xff``) instead of ending the program with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Silence a library's chatter (warnings, log lines, progress on stdout and stderr) for one block."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir", "root")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def root_cause_line(exc: BaseException) -> str:
    """The root cause of a failure (an exporter's, say) in one line, with the user's line that raised it."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    why = f"{type(root).__name__}: {first_line(root)}" if root is not exc else first_line(exc)
    where = re.search(r'raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)', plain)
    if where:
        why += f" (at {Path(where[1]).name} line {where[2]}: {where[3].strip()[:80]})"
    return why
