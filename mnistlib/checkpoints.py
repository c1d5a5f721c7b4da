"""Saving and loading trained models as safe, self-describing checkpoint files.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, written with
``torch.save`` and read back with ``torch.load(weights_only=True)``: loading one never runs code.
It names the registry model and its options, so :func:`load_checkpoint` can rebuild the right
network, and carries the hyperparameters, the training history and the normalisation constants
that a prediction needs. Files are written to a temporary name and renamed, so an interrupted
write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import checkpoint_dir
from .models import get_model

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "new_run_stamp",
    "release_stamp",
    "checkpoint_path",
    "plain",
]

FORMAT = "mnistlib-checkpoint"
VERSION = 1

#: ``best_model_20240131_142501.pth``, or with a collision suffix ``best_model_20240131_142501_2.pth``.
_NAME_RE = re.compile(r"^(?P<kind>[a-z]+)_model_(?P<stamp>\d{8}_\d{6})(?:_(?P<n>\d+))?\.pth$")


class CheckpointError(Exception):
    """A file is not an mnistlib checkpoint, is truncated, or does not fit the model it names."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (in eval mode) and everything saved with it."""

    model: nn.Module
    name: str
    options: dict
    hparams: dict
    history: dict
    mean: float
    std: float
    path: Path | None = None
    epoch: int = 0
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    created: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def best_val_acc(self) -> float | None:
        """The best validation accuracy in the stored history (None when it is empty)."""
        accs = self.history.get("val_acc") or []
        return max(accs) if accs else None

    def __repr__(self) -> str:
        acc = self.best_val_acc
        acc_s = f", best val acc {acc:.2%}" if acc is not None else ""
        where = f" from {self.path.name}" if self.path else ""
        return f"<Checkpoint {self.name!r}{where}: epoch {self.epoch}{acc_s}>"


# --------------------------------------------------------------------------- plain values


def plain(value: Any) -> Any:
    """``value`` with only what ``torch.load(weights_only=True)`` accepts: tensors, numbers,
    strings, None, lists/tuples and string-keyed dicts (numpy scalars become Python numbers,
    paths and dates strings, dataclasses dicts)."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # exact types: subclasses (numpy.float64, TorchVersion) are not safe
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, (Path, _dt.date, _dt.datetime, torch.device, torch.dtype)):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return plain(asdict(value))
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint: {value!r}")


def _plain_state(state: Mapping | None) -> dict | None:
    """An optimizer/scheduler state dict with callables and other objects dropped."""
    if state is None:
        return None
    out = {}
    for k, v in state.items():
        try:
            out[k] = plain(v)
        except TypeError:
            continue  # e.g. a lambda in LambdaLR: rebuilt from the hyperparameters instead
    return out


# --------------------------------------------------------------------------- names


def new_run_stamp(folder: str | Path | None = None) -> str:
    """A ``YYYYMMDD_HHMMSS`` stamp for a new run, with ``_2``, ``_3``… when that second is taken.

    The stamp is reserved with an (empty, hidden) marker file created exclusively, so two runs
    started in the same second never share names; :func:`release_stamp` removes the marker.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    base = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    n = 1
    while True:
        stamp = base if n == 1 else f"{base}_{n}"
        taken = any((folder / f"{kind}_model_{stamp}.pth").exists() for kind in ("best", "final"))
        if not taken:
            try:
                fd = os.open(folder / f".run_{stamp}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
                return stamp
            except FileExistsError:
                pass
        n += 1


def release_stamp(stamp: str, folder: str | Path | None = None) -> None:
    """Remove the marker that :func:`new_run_stamp` left to reserve ``stamp``."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    (folder / f".run_{stamp}.lock").unlink(missing_ok=True)


def checkpoint_path(kind: str, stamp: str, folder: str | Path | None = None) -> Path:
    """``<folder>/<kind>_model_<stamp>.pth`` (kind is ``best`` or ``final``)."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    return folder / f"{kind}_model_{stamp}.pth"


def _sort_key(path: Path) -> tuple:
    m = _NAME_RE.match(path.name)
    if m is None:
        return ("", 0, path.stat().st_mtime)
    return (m["stamp"], int(m["n"] or 1), path.stat().st_mtime)


def list_checkpoints(kind: str | None = "best", folder: str | Path | None = None) -> list[Path]:
    """Checkpoint files in ``folder`` (default: the checkpoint folder), oldest first.

    ``kind`` is ``"best"``, ``"final"`` or None for both.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    if not folder.is_dir():
        return []
    pattern = f"{kind}_model_*.pth" if kind else "*_model_*.pth"
    found = [p for p in folder.glob(pattern) if p.is_file() and _NAME_RE.match(p.name)]
    return sorted(found, key=_sort_key)


def latest_checkpoint(kind: str | None = "best", folder: str | Path | None = None) -> Path | None:
    """The newest ``best_model_*.pth`` (or ``final_…``) by the time stamp in its name, or None."""
    found = list_checkpoints(kind, folder)
    return found[-1] if found else None


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    name: str | None = None,
    options: Mapping | None = None,
    hparams: Mapping | None = None,
    history: Mapping | None = None,
    mean: float,
    std: float,
    epoch: int | None = None,
    optimizer_state: Mapping | None = None,
    scheduler_state: Mapping | None = None,
    extra: Mapping | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename); returns the path.

    ``name``/``options`` default to the registry name and options that :func:`get_model` put on
    the model; without them the checkpoint could not be rebuilt, so a model of unknown origin
    needs an explicit ``name``.
    """
    path = Path(path)
    name = name if name is not None else getattr(model, "registry_name", None)
    if not name:
        raise ValueError("save_checkpoint needs name= (the registry name) for a model not built by get_model")
    options = dict(options if options is not None else getattr(model, "registry_options", {}) or {})
    history = {k: list(v) for k, v in (history or {}).items()}
    if epoch is None:
        epoch = len(history.get("val_acc", history.get("train_loss", [])))
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "name": str(name),
        "options": plain(options),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hparams": plain(dict(hparams or {})),
        "history": plain(history),
        "mean": float(mean),
        "std": float(std),
        "epoch": int(epoch),
        "optimizer_state": _plain_state(optimizer_state),
        "scheduler_state": _plain_state(scheduler_state),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "extra": plain(dict(extra or {})),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused ``path``."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    text = " ".join(str(exc).split())
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        return f"not a PyTorch checkpoint file at all ({size:,} bytes)"
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
        return (f"not an mnistlib checkpoint: it holds Python objects that a safe (weights-only) load refuses "
                f"to run ({detail[:160]})")
    return f"truncated or corrupt PyTorch file ({size:,} bytes): {text.split('. ')[0][:160]}"


def _read(path: Path, device: str | torch.device) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError, struct.error…: torch raises many kinds
        raise CheckpointError(f"{path}: {_why_unreadable(path, exc)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        kind = "a bare state dict" if isinstance(data, dict) and all(
            isinstance(v, torch.Tensor) for v in data.values()) else f"a {type(data).__name__}"
        raise CheckpointError(
            f"{path}: not an mnistlib checkpoint (it holds {kind}, without the model name and "
            "normalisation constants; save with mnistlib.checkpoints.save_checkpoint)"
        )
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer mnistlib (format version {data['version']})")
    missing = [k for k in ("name", "state_dict", "mean", "std") if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the saved model (eval mode, on ``device``) from a checkpoint, safely.

    Raises :class:`CheckpointError` with a one-line reason for a missing file, a file that is not a
    checkpoint, a truncated one, an unknown model name, or weights that do not fit the named model.
    """
    path = Path(path)
    data = _read(path, "cpu")
    name, options = data["name"], dict(data.get("options") or {})
    try:
        model = get_model(name, **options)
    except (KeyError, TypeError, ValueError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {msg}") from None
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"{path}: the stored weights do not fit model {name!r} {options or ''}: {detail[:300]}"
        ) from None
    model.to(device).eval()
    mean, std = float(data["mean"]), float(data["std"])
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise CheckpointError(f"{path}: bad normalisation constants mean={mean}, std={std}")
    return Checkpoint(
        model=model,
        name=name,
        options=options,
        hparams=dict(data.get("hparams") or {}),
        history={k: list(v) for k, v in (data.get("history") or {}).items()},
        mean=mean,
        std=std,
        path=path,
        epoch=int(data.get("epoch", 0)),
        optimizer_state=data.get("optimizer_state"),
        scheduler_state=data.get("scheduler_state"),
        created=str(data.get("created", "")),
        extra=dict(data.get("extra") or {}),
    )


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


def find_checkpoint(tag: str, folder: str | Path | None = None, kind: str = "best") -> Path | None:
    """The newest ``kind`` checkpoint of the run tagged ``tag`` (e.g. ``"lesson-03"``), or None.

    The tag is what the run recorded, read from inside each file, so a checkpoint of another run
    never stands in for it, whatever its date. Unreadable files are skipped.
    """
    for path in reversed(list_checkpoints(kind, folder)):
        try:
            hparams = _read(path, "cpu").get("hparams") or {}
        except CheckpointError:
            continue
        if isinstance(hparams, dict) and hparams.get("tag") == tag:
            return path
    return None


def load_or_train(path: str | Path | None = None, *, tag: str = "lesson-03", folder: str | Path | None = None,
                  device: str | torch.device = "cpu", verbose: bool = True) -> Checkpoint:
    """The model a lesson should use: the checkpoint at ``path`` if given, else the best checkpoint of the
    run tagged ``tag`` (lesson 03's main run by default), else the quick model — trained now if needed.

    Prints which checkpoint it loaded and why. The quick recipe (:data:`mnistlib.recipes.RECIPES`
    ``["quick"]``) takes a couple of minutes on a laptop CPU; under ``MNISTLIB_QUICK`` one epoch on
    20,000 images, on one thread, so the weights are the same on every machine.
    """
    if path is not None:
        ckpt, why = load_checkpoint(path, device), "as asked"
    elif (found := find_checkpoint(tag, folder)) is not None:
        ckpt, why = load_checkpoint(found, device), f"the best checkpoint of the run tagged {tag!r}"
    elif (found := find_checkpoint("quick", folder)) is not None:
        ckpt, why = load_checkpoint(found, device), f"no run tagged {tag!r} yet: the quick model trained earlier"
    else:
        ckpt, why = load_checkpoint(_train_quick(folder, verbose), device), f"no run tagged {tag!r}: trained now"
    if verbose:
        acc = ckpt.best_val_acc
        print(f"Using {ckpt.path.name} — {ckpt.name}, epoch {ckpt.epoch}"
              f"{f', validation accuracy {acc:.2%}' if acc is not None else ''} ({why})")
    return ckpt


def _train_quick(folder: str | Path | None, verbose: bool) -> Path:
    """Train the quick recipe into ``folder``; returns its best checkpoint's path."""
    from .config import quick_mode
    from .devices import threads
    from .recipes import train

    quick = {"epochs": 1, "subset": 20_000, "device": "cpu"} if quick_mode() else {}
    if verbose:
        print("No trained model found: training the quick model (the BatchNorm net, one-cycle) — this takes a moment.")
    with threads(1 if quick else None):
        run = train("quick", tag="quick", checkpoint_dir=folder, verbose=False, **quick)
    if run.history.best_path is None:
        raise CheckpointError("training the quick model was interrupted before it finished an epoch")
    return run.history.best_path
