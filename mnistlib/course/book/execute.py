"""Run lesson notebooks top to bottom and keep their outputs (the input of the book).

``make test-full`` is the project's way to execute every lesson at full settings; this is the
small version the book's own test uses (a couple of lessons, quick mode), with nbclient and the
``python3`` kernel, in the folder the executed copy is written to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mnistlib._support.files import write_text

__all__ = ["execute_notebook"]


def execute_notebook(source: str | Path, out_dir: str | Path, timeout: int = 600) -> Path:
    """Execute ``source`` with its outputs kept into ``out_dir`` (same name; written atomically).

    The kernel runs with Jupyter's inline backend whatever ``MPLBACKEND`` says here (the test suite
    sets ``Agg``): a book page without its figures is not the lesson.
    """
    import nbformat
    from nbclient import NotebookClient

    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out_dir)}})
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    client.execute(env=env)
    return write_text(out_dir / source.name, json.dumps(nbformat.from_dict(nb), ensure_ascii=False, indent=1))
