"""MNIST's IDX files: what each must look like, read with a size bound, checked before anything is written.

A file offered as MNIST (by ``python -m mnistlib data import`` or found in the data root) is
checked for its magic number, item count, 28×28 shape, exact size and labels 0–9; a gzip file is
decompressed as a stream that stops one byte past the expected size, so a decompression bomb is
refused without being read.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

__all__ = ["RAW_FILES", "IDXFormatError", "expected_size", "read_idx_file", "check_header", "check_labels",
           "validate_idx", "read_idx_folder"]

#: The four IDX files, as torchvision keeps them under ``<root>/MNIST/raw``: name → (magic, count).
RAW_FILES: dict[str, tuple[int, int]] = {
    "train-images-idx3-ubyte": (2051, 60_000),
    "train-labels-idx1-ubyte": (2049, 60_000),
    "t10k-images-idx3-ubyte": (2051, 10_000),
    "t10k-labels-idx1-ubyte": (2049, 10_000),
}


class IDXFormatError(ValueError):
    """A file offered as MNIST IDX data is truncated, corrupt or of the wrong kind."""


def expected_size(name: str) -> int:
    """The exact byte size of a valid IDX file ``name``."""
    magic, count = RAW_FILES[name]
    return 16 + count * 28 * 28 if magic == 2051 else 8 + count


def read_idx_file(path: str | Path, name: str) -> bytes:
    """The bytes of ``path`` (plain or gzip), offered as MNIST file ``name``, read with a bound:
    never more than the expected size plus one byte, so a huge file or a small ``.gz`` that
    expands to gigabytes is refused without being read whole."""
    path = Path(path)
    limit = expected_size(name)
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise IDXFormatError(f"{name}: {size} bytes, expected {limit} (truncated or padded file)")
            fh.seek(0)
            return fh.read(limit)
        fh.seek(0)
        try:
            with gzip.GzipFile(fileobj=fh) as gz:
                data = gz.read(limit + 1)  # decompressed as a stream: stops one byte past the size
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(f"{path.name}: broken gzip file ({exc})") from None
    if len(data) > limit:
        raise IDXFormatError(f"{path.name}: this gzip file decompresses to more than the {limit:,} bytes of {name}; "
                             "refused without reading it all (corrupt, not MNIST, or a decompression bomb)")
    return data


def check_header(name: str, head: bytes, size: int) -> None:
    """Magic number, count, 28×28 shape (from the first 16 bytes) and total size of IDX file ``name``."""
    magic, count = RAW_FILES[name]
    if size < 8 or len(head) < 8:
        raise IDXFormatError(f"{name}: too short to be an IDX file ({size} bytes)")
    got_magic, got_count = struct.unpack(">II", head[:8])
    if got_magic != magic:
        raise IDXFormatError(f"{name}: wrong magic number {got_magic} (expected {magic})")
    if got_count != count:
        raise IDXFormatError(f"{name}: holds {got_count} items (expected {count})")
    if magic == 2051:
        rows, cols = struct.unpack(">II", head[8:16]) if len(head) >= 16 else (0, 0)
        if (rows, cols) != (28, 28):
            raise IDXFormatError(f"{name}: images are {rows}×{cols} (expected 28×28)")
    expected = expected_size(name)
    if size != expected:
        raise IDXFormatError(f"{name}: {size} bytes, expected {expected} (truncated or padded file)")


def check_labels(name: str, data: bytes) -> None:
    """Every label of a labels file is a digit 0–9."""
    if RAW_FILES[name][0] == 2049 and len(data) > 8 and max(data[8:]) > 9:
        raise IDXFormatError(f"{name}: labels outside 0–9")


def validate_idx(name: str, data: bytes) -> None:
    """Check one IDX file's magic number, count, 28×28 shape, length and (labels) values 0–9."""
    check_header(name, data[:16], len(data))
    check_labels(name, data)


def read_idx_folder(source: str | Path) -> dict[str, bytes]:
    """The four files from folder ``source`` (plain, ``.gz`` or in ``MNIST/raw``), each read and checked."""
    source = Path(source)
    if not source.is_dir():
        raise IDXFormatError(f"{source} is not a folder")
    contents: dict[str, bytes] = {}
    for name in RAW_FILES:
        candidates = [source / name, source / f"{name}.gz", source / "MNIST" / "raw" / name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise IDXFormatError(f"{name} (or {name}.gz) not found in {source}")
        contents[name] = read_idx_file(found, name)
        validate_idx(name, contents[name])
    return contents
