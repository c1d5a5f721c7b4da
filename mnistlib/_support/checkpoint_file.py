"""Reading a checkpoint file safely and checking its fields, before any model is built.

Every problem is one :class:`CheckpointError` line: a missing or unreadable file, a file that is not a
zip archive (every PyTorch checkpoint is one), compressed or oversized records, pickles that ask for
code (named, never run), fields of the wrong type, tensors that claim more bytes than the file holds.

Loading is bounded before anything is materialised. The zip directory is checked (records stored,
within the file), then the pickle that holds every field but the tensors' bytes is read as opcodes,
never run (:mod:`pickletools`): at most :data:`MAX_PICKLE_BYTES` and :data:`MAX_PICKLE_OPS`, no text
or byte string over :data:`MAX_TEXT`, no whole number of 64 bits or more, no global beyond those a
weights-only load allows. Only then ``torch.load(weights_only=True)`` reads it, and one walk that visits
each object once (:func:`structure_problem`) refuses any type but dicts, lists, tuples, numbers, text,
None and plain CPU tensors, a container reached twice (shared, or holding itself), and nesting deeper
than :data:`MAX_DEPTH`.
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

__all__ = ["CheckpointError", "MAX_DEPTH", "MAX_PICKLE_BYTES", "MAX_PICKLE_OPS", "MAX_TEXT", "read_checkpoint_file",
           "field_problem", "repeated_bytes", "structure_problem"]


class CheckpointError(Exception):
    """A file is not an mnistlib checkpoint, is truncated, or does not fit the model it names."""


# --------------------------------------------------------------------------- reading, safely and bounded

#: Bytes of a file that is not a zip archive scanned to say what it is.
_SCAN_LIMIT = 1 << 20

#: The bounds on a checkpoint's pickle (every field but the tensors' bytes), checked before it is loaded. A real
#: one takes about 5 kB and 1,500 operations; text is a model name, a date, a tag.
MAX_PICKLE_BYTES = 4 * 1024 * 1024
MAX_PICKLE_OPS = 1_000_000
MAX_TEXT = 65_536  #: characters of one text (bytes of one byte string)
MAX_DEPTH = 32  #: levels of nesting (a real checkpoint has about 6)
_MAX_INT = 2**63  #: whole numbers are 64-bit, as in any tensor
_TEXT_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
                       "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})


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


def _too_large(size: int) -> str:
    return (f"its fields (all but the tensors' data) take {size / 2**20:,.1f} MiB pickled, more than the "
            f"{MAX_PICKLE_BYTES / 2**20:g} MiB a checkpoint may use: refused before loading them")


def _pickle_bounds_problem(payload: bytes) -> str | None:
    """What in a checkpoint's pickle breaks the bounds (size, operations, text, numbers, code), read as opcodes
    without running anything; None when it keeps them (or is not a complete pickle: torch.load says so)."""
    if len(payload) > MAX_PICKLE_BYTES:
        return _too_large(len(payload))
    refused = _refused_for_code(io.BytesIO(payload))
    if refused:
        return refused
    try:
        for n, (op, arg, _) in enumerate(pickletools.genops(payload)):
            if n >= MAX_PICKLE_OPS:
                return (f"its fields take more than {MAX_PICKLE_OPS:,} pickle operations (a real checkpoint takes a "
                        "few thousand): refused before loading them")
            if op.name in _TEXT_OPS and len(arg) > MAX_TEXT:
                return (f"a field holds a text of {len(arg):,} characters, more than the {MAX_TEXT:,} a checkpoint "
                        "may use: refused before loading it")
            if type(arg) is int and abs(arg) >= _MAX_INT:
                return f"a field holds a whole number out of range ({len(str(abs(arg))):,} digits; 64 bits at most)"
    except Exception:  # not a complete pickle: ValueError, struct.error, UnicodeDecodeError…
        return None
    return None


def _pickle_problem(fh: io.BufferedReader) -> str | None:
    """The bounds problem of the ``data.pkl`` record of an archive whose directory :func:`_zip_problem` accepted."""
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as zf:
            record = next((r for r in zf.infolist() if r.filename.endswith("data.pkl")), None)
            if record is None:
                return None  # torch.load says what is missing
            if record.file_size > MAX_PICKLE_BYTES:
                return _too_large(record.file_size)
            payload = zf.read(record)
    except Exception:  # a damaged archive: torch.load says so
        return None
    return _pickle_bounds_problem(payload)


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
        problem = _zip_problem(fh, size) or _pickle_problem(fh)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        fh.seek(0)
        try:
            data = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, EOFError, RuntimeError, OSError…: torch raises many kinds
            raise CheckpointError(f"{path}: {_why_refused(fh, size, exc)}") from None
    problem = structure_problem(data)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    if not isinstance(data, dict) or data.get("format") != fmt:
        kind = "a bare state dict" if isinstance(data, dict) and all(
            isinstance(v, torch.Tensor) for v in data.values()) else f"a {type(data).__name__}"
        raise CheckpointError(
            f"{path}: not an mnistlib checkpoint (it holds {kind}, without the model name and "
            "normalisation constants; save with mnistlib.checkpoints.save_checkpoint)"
        )
    return data


# --------------------------------------------------------------------------- the structure, walked once

_LEAVES = (type(None), bool, int, float, str)


def _where(path: tuple) -> str:
    """``field 'extra' ['x'][0]`` for the path of keys from the checkpoint's top."""
    if not path:
        return "the checkpoint"
    return f"field {path[0]!r}" + ("" if len(path) == 1 else " " + "".join(f"[{key!r}]" for key in path[1:]))


def _node_problem(value: Any, path: tuple, seen: set[int]) -> str | None:
    """Why one container (or a tensor, or another object) may not be in a checkpoint; None when it may."""
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            return f"{_where(path)} is a {value.layout} {value.device.type} tensor, not a plain one"
        return None
    if not isinstance(value, (dict, list, tuple)):
        return f"{_where(path)} holds a {type(value).__name__}, which an mnistlib checkpoint never does"
    if id(value) in seen:
        return (f"{_where(path)} is a {type(value).__name__} that appears twice (shared, or holding itself): "
                "refused, an mnistlib checkpoint never shares one")
    if len(path) > MAX_DEPTH:
        return f"{_where(path[:3])} is nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, dict) and not all(type(k) in (str, int) for k in value):
        return f"{_where(path)} has keys that are neither text nor whole numbers"
    return None


def structure_problem(data: Any) -> str | None:
    """The first place where a loaded checkpoint is not plain data (see the module's docstring), in words; None
    when it all is. One walk that visits each object once, iteratively: it ends quickly on any input."""
    seen: set[int] = set()
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        problem = _node_problem(value, path, seen)
        if problem:
            return problem
        if isinstance(value, torch.Tensor):
            continue
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if not isinstance(item, _LEAVES) and not (type(item) is tuple and not item):  # () is one shared object
                stack.append((item, (*path, key)))
    return None


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


#: Bounds of the numbers a run records (a resumed run trusts them): (type, lowest, highest, None allowed).
_RUN_NUMBERS: dict[str, tuple[tuple[type, ...], float, float, bool]] = {
    "epochs": ((int,), 0, 1_000_000, False),
    "batch_size": ((int,), 1, 1_000_000, False),
    "lr": (_NUMBER, 0, 10, False),
    "seed": ((int,), -(2**63), 2**63 - 1, True),
    "subset": ((int,), 1, 100_000_000, True),
    "target_accuracy": (_NUMBER, 0, 1, True),
    "patience": ((int,), 1, 1_000_000, True),
}
#: The texts, flags and dicts a run records, by type.
_RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "tag": (str,), "optimizer": (str,), "scheduler": (str,), "augment": (str,), "model": (str,),
    "channels_last": (bool,), "optimizer_options": (dict,), "scheduler_options": (dict,), "model_options": (dict,),
}


def _hparams_problem(hparams: dict) -> str | None:
    """The first recorded setting of the run (epochs, lr, optimizer…) of the wrong type or out of range."""
    for key, (types, low, high, optional) in _RUN_NUMBERS.items():
        value = hparams.get(key)
        if value is None and (optional or key not in hparams):
            continue
        if not isinstance(value, types) or isinstance(value, bool) or not low <= value <= high:
            kind = "a whole number" if types == (int,) else "a number"
            return f"hparams field {key!r} is {_short(value)}, expected {kind} from {low:g} to {high:g}"
    for key, types in _RUN_FIELDS.items():
        value = hparams.get(key)
        if key in hparams and not isinstance(value, types):
            return f"hparams field {key!r} is {type(value).__name__} {_short(value)}, expected a {types[0].__name__}"
    return None


def field_problem(data: dict, version: int) -> str | None:
    """The first field of a loaded checkpoint that is missing, of the wrong type or out of range, in words."""
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
    if not 0 <= data.get("epoch", 0) <= 1_000_000:
        return f"field 'epoch' is {data['epoch']:,}, expected a whole number from 0 to 1,000,000"
    problem = _hparams_problem(data.get("hparams") or {})
    if problem:
        return problem
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
    """Every tensor inside a loaded checkpoint (state dict, optimizer state, extras…), each container visited
    once, without recursion (whatever the nesting)."""
    tensors, seen, stack = [], set(), [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            tensors.append(item)
        elif isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return tensors


def repeated_bytes(data: dict) -> tuple[int, int]:
    """(bytes the stored tensors claim, bytes their distinct storages hold). A view that repeats
    data (stride 0) claims far more than the file holds, and a copy of it (to a GPU, into a model)
    would allocate all of that."""
    tensors = _tensors_in(data)
    claimed = sum(t.numel() * t.element_size() for t in tensors)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return claimed, sum(storages.values())
