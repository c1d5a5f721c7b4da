"""Reading a checkpoint file safely and checking its fields, before any model is built.

Every problem is one :class:`CheckpointError` line: a missing or unreadable file, a file that is not a
zip archive (every PyTorch checkpoint is one), compressed or oversized records, pickles that ask for
code (named, never run), fields of the wrong type, tensors that claim more bytes than the file holds.
The file is read with ``torch.load(weights_only=True)`` only after its zip directory has been checked.
"""

from __future__ import annotations

import io
import os
import pickletools
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "read_checkpoint_file", "field_problem", "repeated_bytes"]


class CheckpointError(Exception):
    """A file is not an mnistlib checkpoint, is truncated, or does not fit the model it names."""


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


def read_checkpoint_file(path: Path, fmt: str) -> dict:
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
    if not isinstance(data, dict) or data.get("format") != fmt:
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


def field_problem(data: dict, version: int) -> str | None:
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
    if data.get("version", 0) > version:
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


def _tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor inside a loaded checkpoint (state dict, optimizer state, extras…)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v)]
    return []


def repeated_bytes(data: dict) -> tuple[int, int]:
    """(bytes the stored tensors claim, bytes their distinct storages hold). A view that repeats
    data (stride 0) claims far more than the file holds, and a copy of it (to a GPU, into a model)
    would allocate all of that."""
    tensors = _tensors_in(data)
    claimed = sum(t.numel() * t.element_size() for t in tensors)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return claimed, sum(storages.values())
