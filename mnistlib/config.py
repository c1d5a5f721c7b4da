"""Where data and checkpoints live, and whether to run the short CI schedule.

Everything is resolved from environment variables first, so a notebook finds the same data
root whatever its working directory is.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MNISTLIB_DATA"
CHECKPOINTS_ENV = "MNISTLIB_CHECKPOINTS"
QUICK_ENV = "MNISTLIB_QUICK"

#: The repository root when mnistlib is used from a checkout (editable install).
REPO_ROOT = Path(__file__).resolve().parent.parent


def _base() -> Path:
    """The repository root for a checkout, else the current directory (installed wheel)."""
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT
    return Path.cwd()


def data_root() -> Path:
    """Folder that holds ``MNIST/raw``: ``$MNISTLIB_DATA``, else ``data/`` at the repository root."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else _base() / "data"


def checkpoint_dir() -> Path:
    """Folder for checkpoints: ``$MNISTLIB_CHECKPOINTS``, else ``checkpoints/`` at the repo root."""
    env = os.environ.get(CHECKPOINTS_ENV)
    return Path(env).expanduser().resolve() if env else _base() / "checkpoints"


def quick_mode() -> bool:
    """True when ``$MNISTLIB_QUICK`` asks for the short, seeded schedule used under test."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quick_overrides(**values: object) -> dict[str, object]:
    """``values`` under ``$MNISTLIB_QUICK`` (the automatic tests' short schedule), else nothing.

    A lesson's settings cell stays what a learner runs; the cell after it applies
    ``globals().update(quick_overrides(EPOCHS=2, ...))``, which changes nothing outside the tests.
    """
    return dict(values) if quick_mode() else {}
