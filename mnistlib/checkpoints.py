"""Saving and loading trained models as safe, self-describing checkpoint files.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, written with
``torch.save`` and read back with ``torch.load(weights_only=True)``: loading one never runs code.
It names the registry model and its options, so :func:`load_checkpoint` can rebuild the right
network, and carries the hyperparameters, the training history and the normalisation constants
that a prediction needs. Files are written to a temporary name and renamed, so an interrupted
write never leaves a half-written checkpoint behind (:func:`clean_stale` removes the temporaries
of runs that were killed), and they get the mode the umask allows, like any file a user creates.

Loading is bounded as well as safe: the file's zip directory is checked before anything is
unpickled, the named model is first built on PyTorch's ``meta`` device (no memory) and its shapes
compared with the stored weights, and only a model that the stored weights fill is built for real
— so a crafted file cannot make :func:`load_checkpoint` allocate beyond what its weights need.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._support import files
from ._support.checkpoint_file import CheckpointError, field_problem, read_checkpoint_file, repeated_bytes
from .config import checkpoint_dir
from .models import get_model, model_options

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "find_checkpoint",
    "new_run_stamp",
    "release_stamp",
    "checkpoint_path",
    "clean_stale",
    "plain",
]

FORMAT = "mnistlib-checkpoint"
VERSION = 1

#: ``best_model_20240131_142501.pth``, or with a collision suffix ``best_model_20240131_142501_2.pth``.
_NAME_RE = re.compile(r"^(?P<kind>[a-z]+)_model_(?P<stamp>\d{8}_\d{6})(?:_(?P<n>\d+))?\.pth$")
#: ``.run_20240131_142501.lock``: the marker that reserves a run's stamp while the run is alive.
_LOCK_RE = re.compile(r"^\.run_\d{8}_\d{6}(?:_\d+)?\.lock$")


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
        accs = [a for a in self.history.get("val_acc") or [] if not math.isnan(a)]  # NaN: not validated
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

    The stamp is reserved with a hidden marker file created exclusively, so two runs started in
    the same second never share names; :func:`release_stamp` removes the marker. The marker holds
    the run's process id and host tag, so :func:`clean_stale` can tell when its run has died.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    base = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    n = 1
    while True:
        stamp = base if n == 1 else f"{base}_{n}"
        taken = any((folder / f"{kind}_model_{stamp}.pth").exists() for kind in ("best", "final"))
        if not taken and files.create_lock(folder / f".run_{stamp}.lock"):
            return stamp
        n += 1


def release_stamp(stamp: str, folder: str | Path | None = None) -> None:
    """Remove the marker that :func:`new_run_stamp` left to reserve ``stamp``."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    (folder / f".run_{stamp}.lock").unlink(missing_ok=True)


def clean_stale(folder: str | Path | None = None) -> list[Path]:
    """Remove what killed runs left in ``folder`` (default: the checkpoint folder): half-written
    ``.…pth.….part`` temporaries (and those of the run's figures) and the ``.run_*.lock`` markers of runs
    that no longer exist.

    Call it when a run starts. It never removes a file of a live run on this machine (see
    :mod:`mnistlib._support.files` for the rule); returns the paths removed.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    return files.clean_stale(folder, targets=lambda name: name.endswith((".pth", ".png")),  # checkpoints, figures
                             locks=lambda name: bool(_LOCK_RE.match(name)))


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
    """Write a checkpoint atomically (temporary file in the same folder, fsync, rename; the mode
    the umask allows); returns the path.

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
    buffer = io.BytesIO()  # serialised first: then a full disk is Python's plain OSError (ENOSPC), not torch's
    torch.save(payload, buffer)  # "[enforce fail at inline_container.cc] unexpected pos"
    return files.write_bytes(path, buffer.getbuffer())


# --------------------------------------------------------------------------- rebuilding, bounded


def _shape_problem(expected: Mapping[str, torch.Tensor], stored: Mapping[str, torch.Tensor]) -> str | None:
    """How the stored weights differ from the named model's: missing/unexpected keys, sizes."""
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    sizes = [f"{k}: stored {list(stored[k].shape)}, model {list(v.shape)}"
             for k, v in expected.items() if k in stored and stored[k].shape != v.shape]
    parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
        [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + sizes[:3]
    return "; ".join(parts) or None


def _option_problem(name: str, key: str, value: Any) -> str | None:
    """Why a stored model option does not have the type of the model's own default (``first_bn="False"`` is
    not ``False``: a string would be read as true); None when it has."""
    try:
        default = model_options(name)[key]
    except (KeyError, ValueError):  # an unknown model or option: rebuilding the model says so
        return None
    whole = type(value) is int
    if isinstance(default, bool):
        ok, kind = type(value) is bool, "true or false"
    elif isinstance(default, int):
        ok, kind = whole, "a whole number"
    elif isinstance(default, float):
        ok, kind = whole or (type(value) is float and math.isfinite(value)), "a finite number"
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and all(type(v) is int for v in value)
        kind = "a list of whole numbers"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "text"
    else:
        return None
    return None if ok else f"option {key}={_short(value)} of model {name!r} should be {kind} (default {default!r})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _build(path: Path, name: str, options: dict, stored: dict) -> nn.Module:
    """The named model with the stored weights, built for real only once a ``meta``-device twin
    (no memory) has shown that the stored weights fill it exactly."""
    for key, value in options.items():  # a long list option would build that many layers, even on meta
        if isinstance(value, (list, tuple, dict)) and len(value) > len(stored):
            raise CheckpointError(f"{path}: option {key}= has {len(value):,} entries, more than the "
                                  f"{len(stored)} stored tensors could fill")
        problem = _option_problem(name, key, value)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
    try:
        with torch.device("meta"):
            shell = get_model(name, **options)
    except Exception as exc:  # unknown model, option it does not take, bad value, sizes that overflow
        msg = exc.args[0] if exc.args else str(exc)
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {' '.join(str(msg).split())[:300]}") from None
    problem = _shape_problem(shell.state_dict(), stored)
    if problem:
        raise CheckpointError(f"{path}: the stored weights do not fit model {name!r} {options or ''}: {problem[:300]}")
    model = get_model(name, **options)
    try:
        model.load_state_dict(stored, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"{path}: the stored weights do not fit model {name!r} {options or ''}: {detail[:300]}"
        ) from None
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the saved model (eval mode, on ``device``) from a checkpoint, safely.

    Raises :class:`CheckpointError` with a one-line reason for a missing or unreadable file, a file
    that is not a checkpoint, a truncated one, one holding code, fields of the wrong type, an
    unknown model name, or weights that do not fit the named model (checked before the model is
    allocated, so a crafted file cannot make this allocate beyond its weights).
    """
    path = Path(path)
    data = read_checkpoint_file(path, FORMAT)
    problem = field_problem(data, VERSION)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    claimed, held = repeated_bytes(data)
    if claimed > held:
        raise CheckpointError(f"{path}: its tensors claim {claimed:,} bytes but hold {held:,} (views that "
                              "repeat data): refused, using them would allocate beyond what the file holds")
    mean, std = float(data["mean"]), float(data["std"])
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise CheckpointError(f"{path}: bad normalisation constants mean={mean}, std={std}")
    name, options = data["name"], dict(data.get("options") or {})
    model = _build(path, name, options, data["state_dict"])
    model.to(device).eval()
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


def find_checkpoint(tag: str, folder: str | Path | None = None, kind: str = "best") -> Path | None:
    """The newest ``kind`` checkpoint of the run tagged ``tag`` (e.g. ``"lesson-03"``), or None.

    The tag is what the run recorded, read from inside each file, so a checkpoint of another run
    never stands in for it, whatever its date. Unreadable files are skipped.
    """
    for path in reversed(list_checkpoints(kind, folder)):
        try:
            hparams = read_checkpoint_file(path, FORMAT).get("hparams") or {}
        except CheckpointError:
            continue
        if isinstance(hparams, dict) and hparams.get("tag") == tag:
            return path
    return None
