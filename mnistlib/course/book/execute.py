"""Run lesson notebooks top to bottom and keep their outputs (the input of the book).

``make test-full`` is the project's way to execute every lesson at full settings; this is the
small version the book's own test uses (a couple of lessons, quick mode), with nbclient and the
``python3`` kernel, in the folder the executed copy is written to.
"""

from __future__ import annotations

import json
from pathlib import Path

from mnistlib._support.files import write_text

__all__ = ["execute_notebook"]


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
