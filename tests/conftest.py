"""Shared pytest fixtures.

``data_root``: the folder holding ``MNIST/raw`` with the four IDX files — ``$MNISTLIB_DATA`` if
set, else ``data/`` at the repository root, else ``../shared/data`` next to the repository.
Tests that need MNIST are skipped cleanly when none of them has the files. Treat it as
read-only: tests that write copy what they need into ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RAW_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def find_data_root() -> Path | None:
    """The first candidate data root that holds all four MNIST IDX files, or None."""
    candidates = [REPO / "data", REPO.parent / "shared" / "data"]
    env = os.environ.get("MNISTLIB_DATA")
    if env:
        candidates.insert(0, Path(env).expanduser())
    for root in candidates:
        if all((root / "MNIST" / "raw" / name).is_file() for name in RAW_NAMES):
            return root.resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """A read-only data root with the real MNIST files (skips the test if there is none)."""
    root = find_data_root()
    if root is None:
        pytest.skip("MNIST files not found: set MNISTLIB_DATA or run `python -m mnistlib data import DIR`")
    return root


@pytest.fixture(scope="session")
def raw_dir(data_root: Path) -> Path:
    """``<data_root>/MNIST/raw`` — the four real IDX files, uncompressed (read-only)."""
    return data_root / "MNIST" / "raw"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models train as fast on one thread, and do not fight other processes over a small CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Close the figures a test made, so a long run does not pile them up."""
    yield
    plt.close("all")
