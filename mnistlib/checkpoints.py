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

import contextlib
import datetime as _dt
import io
import math
import os
import pickletools
import re
import signal
import stat
import threading
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import safefiles
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
    "clean_stale",
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
        if not taken:
            try:
                fd = os.open(folder / f".run_{stamp}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
                try:
                    os.write(fd, f"{safefiles.owner_tag().replace('-', ' ')}\n".encode())
                finally:
                    os.close(fd)
                return stamp
            except FileExistsError:
                pass
        n += 1


def release_stamp(stamp: str, folder: str | Path | None = None) -> None:
    """Remove the marker that :func:`new_run_stamp` left to reserve ``stamp``."""
    folder = Path(folder) if folder is not None else checkpoint_dir()
    (folder / f".run_{stamp}.lock").unlink(missing_ok=True)


def clean_stale(folder: str | Path | None = None) -> list[Path]:
    """Remove what killed runs left in ``folder`` (default: the checkpoint folder): half-written
    ``.…pth.….part`` temporaries and the ``.run_*.lock`` markers of runs that no longer exist.

    Call it when a run starts. It never removes a file of a live run on this machine (see
    :mod:`mnistlib.safefiles` for the rule); returns the paths removed.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    return safefiles.clean_stale(folder, targets=lambda name: name.endswith(".pth"))


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
    return safefiles.atomic_write(path, lambda tmp: torch.save(payload, str(tmp)))


# --------------------------------------------------------------------------- reading, safely and bounded

#: Bytes of a file that is not a zip archive scanned to say what it is.
_SCAN_LIMIT = 1 << 20


def _allowed_globals() -> set[str]:
    """The ``module.name`` globals a weights-only load accepts (torch's rebuild functions, dtypes…)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - a torch without the private helper
        allowed = set()
    safe = getattr(torch.serialization, "get_safe_globals", lambda: [])()
    return allowed | {f"{g.__module__}.{g.__qualname__}" for g in safe if hasattr(g, "__qualname__")}


def _pickle_globals(stream: io.BytesIO, max_pickles: int = 4) -> list[str] | None:
    """The ``module.name`` of every global the pickles in ``stream`` ask for, read without running
    anything (``pickletools``); None when the bytes are not a complete pickle."""
    found: list[str] = []
    for n in range(max_pickles):
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # not a pickle (any more): ValueError, struct.error, UnicodeDecodeError…
            return found if n > 0 else None
        if stream.tell() >= len(stream.getbuffer()):
            break
    return found


def _refused_for_code(stream: io.BytesIO) -> str | None:
    """The message for a pickle that names globals a safe load never runs, or None if it names none."""
    names = _pickle_globals(stream)
    allowed = _allowed_globals()
    unsafe = [n for n in names or [] if n not in allowed]
    if not unsafe:
        return None
    return (f"refused: it holds code or Python objects that a safe (weights-only) load never runs "
            f"(it asks for {', '.join(dict.fromkeys(unsafe[:3]))}); nothing in it was run")


def _not_a_zip(fh: io.BufferedReader, size: int) -> str:
    """Why a file that is not a zip archive (every checkpoint is one) is refused, in a few words."""
    fh.seek(0)
    stream = io.BytesIO(fh.read(_SCAN_LIMIT))
    refused = _refused_for_code(stream)
    if refused:
        return refused
    stream.seek(0)
    if size and _pickle_globals(stream) is not None:
        return ("not an mnistlib checkpoint: a bare pickle or an old-format PyTorch file (mnistlib writes "
                "zip archives, loaded with torch.load(weights_only=True))")
    return f"not a PyTorch checkpoint file at all ({size:,} bytes)"


def _zip_problem(fh: io.BufferedReader, size: int) -> str | None:
    """What is wrong with the zip archive's directory, before anything is unpickled: every record
    must be stored uncompressed and fit in the file, so loading allocates no more than its size."""
    try:
        with zipfile.ZipFile(fh) as zf:
            records = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        return f"truncated or corrupt PyTorch file ({size:,} bytes): {' '.join(str(exc).split())[:160]}"
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED or r.file_size != r.compress_size]
    if packed:
        return (f"not an mnistlib checkpoint: record {packed[0]!r} is compressed (PyTorch stores records "
                "uncompressed; a compressed one could expand far beyond the file's size)")
    claimed = sum(r.file_size for r in records)
    if claimed > size:
        return f"truncated or corrupt PyTorch file: its records claim {claimed:,} bytes, the file has {size:,}"
    return None


def _why_refused(fh: io.BufferedReader, size: int, exc: BaseException) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a zip archive."""
    text = " ".join(str(exc).split())
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as zf:
            pkl = next((r for r in zf.infolist() if r.filename.endswith("data.pkl")), None)
            payload = zf.read(pkl) if pkl is not None else b""  # stored and within the file: checked
    except Exception:  # the archive itself is damaged
        payload = b""
    refused = _refused_for_code(io.BytesIO(payload))
    if refused:
        return refused
    if "Weights only load failed" in text and _pickle_globals(io.BytesIO(payload)) is not None:
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().split(". ")[0]
        return (f"not an mnistlib checkpoint: it holds Python objects that a safe (weights-only) load refuses "
                f"({detail[:160]})")
    return f"truncated or corrupt PyTorch file ({size:,} bytes): {text.split('. ')[0][:160]}"


def _read(path: Path) -> dict:
    """The checkpoint's dictionary, loaded safely; the file is opened once, and every problem with it
    (missing, unreadable, not a zip archive, compressed or oversized records, code) is one line."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise CheckpointError(f"{path}: not a file")
        fh = open(path, "rb")  # noqa: SIM115 - closed below, and never reopened on an error path
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:  # PermissionError (chmod 000), EIO…
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"{path}: {_not_a_zip(fh, size)}")
        problem = _zip_problem(fh, size)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        fh.seek(0)
        try:
            data = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, EOFError, RuntimeError, OSError…: torch raises many kinds
            raise CheckpointError(f"{path}: {_why_refused(fh, size, exc)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        kind = "a bare state dict" if isinstance(data, dict) and all(
            isinstance(v, torch.Tensor) for v in data.values()) else f"a {type(data).__name__}"
        raise CheckpointError(
            f"{path}: not an mnistlib checkpoint (it holds {kind}, without the model name and "
            "normalisation constants; save with mnistlib.checkpoints.save_checkpoint)"
        )
    return data


# --------------------------------------------------------------------------- checking the fields

_NUMBER = (int, float)
#: field → (accepted types, what to call them in a message, required)
_FIELDS: dict[str, tuple[tuple[type, ...], str, bool]] = {
    "version": ((int,), "a whole number", False),
    "name": ((str,), "a model name", True),
    "state_dict": ((dict,), "a dict of tensors", True),
    "mean": (_NUMBER, "a number", True),
    "std": (_NUMBER, "a number", True),
    "options": ((dict, type(None)), "a dict", False),
    "hparams": ((dict, type(None)), "a dict", False),
    "history": ((dict, type(None)), "a dict of lists of numbers", False),
    "epoch": ((int,), "a whole number", False),
    "optimizer_state": ((dict, type(None)), "a dict", False),
    "scheduler_state": ((dict, type(None)), "a dict", False),
    "created": ((str,), "a date string", False),
    "extra": ((dict, type(None)), "a dict", False),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _field_problem(data: dict) -> str | None:
    """The first field of a loaded checkpoint that is missing or of the wrong type, in words."""
    missing = [k for k, (_, _, required) in _FIELDS.items() if required and k not in data]
    if missing:
        return f"checkpoint lacks {', '.join(missing)}"
    for key, (types, what, _) in _FIELDS.items():
        if key not in data:
            continue
        value = data[key]
        bad = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if bad:
            return f"field {key!r} is {type(value).__name__} {_short(value)}, expected {what}"
    if data.get("version", 0) > VERSION:
        return f"written by a newer mnistlib (format version {data['version']})"
    if not all(isinstance(k, str) for k in data.get("options") or {}):
        return "field 'options' has keys that are not names"
    for key, values in (data.get("history") or {}).items():
        if not isinstance(values, (list, tuple)) or not all(_is_number(v) for v in values):
            return f"history field {key!r} is not a list of numbers"
    for key, t in data["state_dict"].items():
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.device.type != "cpu":
            return f"state_dict entry {key!r} is not a plain tensor"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


def _tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor inside a loaded checkpoint (state dict, optimizer state, extras…)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v)]
    return []


def _repeated_bytes(data: dict) -> tuple[int, int]:
    """(bytes the stored tensors claim, bytes their distinct storages hold). A view that repeats
    data (stride 0) claims far more than the file holds, and a copy of it (to a GPU, into a model)
    would allocate all of that."""
    tensors = _tensors_in(data)
    claimed = sum(t.numel() * t.element_size() for t in tensors)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return claimed, sum(storages.values())


def _build(path: Path, name: str, options: dict, stored: dict) -> nn.Module:
    """The named model with the stored weights, built for real only once a ``meta``-device twin
    (no memory) has shown that the stored weights fill it exactly."""
    for key, value in options.items():  # a long list option would build that many layers, even on meta
        if isinstance(value, (list, tuple, dict)) and len(value) > len(stored):
            raise CheckpointError(f"{path}: option {key}= has {len(value):,} entries, more than the "
                                  f"{len(stored)} stored tensors could fill")
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
    data = _read(path)
    problem = _field_problem(data)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    claimed, held = _repeated_bytes(data)
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
            hparams = _read(path).get("hparams") or {}
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
