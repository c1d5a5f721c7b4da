"""Helpers shared by the data and CLI import tests."""

from __future__ import annotations

from pathlib import Path

from mnistlib.data import RAW_FILES


def idx_source(tmp: Path, raw_dir: Path, broken: str | None = None, content: bytes = b"") -> Path:
    """A source folder of links to the four real IDX files, with ``broken`` replaced by ``content``."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        if name == broken:
            (tmp / name).write_bytes(content)
        else:
            (tmp / name).symlink_to(raw_dir / name)
    return tmp
