"""Run lesson notebooks top to bottom and keep their outputs (the input of the book).

``make test-full`` is the project's way to execute every lesson at full settings; this is the
small version the book's own test uses (a couple of lessons, quick mode), with nbclient and the
``python3`` kernel, in the folder the executed copy is written to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..safefiles import write_text

__all__ = ["execute_notebook", "execute_all"]


def execute_notebook(source: str | Path, out_dir: str | Path, timeout: int = 600) -> Path:
    """Execute ``source`` with its outputs kept into ``out_dir`` (same name; written atomically)."""
    import nbformat
    from nbclient import NotebookClient

    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out_dir)}})
    client.execute()
    return write_text(out_dir / source.name, json.dumps(nbformat.from_dict(nb), ensure_ascii=False, indent=1))


def execute_all(sources: Iterable[str | Path], out_dir: str | Path, timeout: int = 600) -> list[Path]:
    """Execute each notebook in order (a later lesson may use what an earlier one saved)."""
    return [execute_notebook(s, out_dir, timeout) for s in sources]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
