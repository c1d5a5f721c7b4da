"""Your own handwriting as a dataset: labelled drawings from the pad, and image files you add.

A folder (default ``<data root>/my_digits``) holds it all::

    my_digits/
      manifest.jsonl      one line per pad drawing: its PNG, label, strokes, canvas size, brush, session
      pad/00001_7.png     the pad drawing as you saw it (black on white, canvas resolution)
      7/photo.jpg         a photo or scan: the label is the folder's name …
      scan_3.png          … or a lone digit in the file name

Every write is atomic (:func:`mnistlib._support.files.write_bytes`): a crash, a kill or a full disk during a
save leaves the earlier samples exactly as they were. Saving and undoing hold the folder's lock
(``.manifest.lock``, :func:`mnistlib._support.files.hold_lock`), so two processes saving at once never
lose a line or leave a PNG the manifest does not list. Nothing in a damaged folder is fatal: a damaged
manifest line, a line repeating an earlier one (counted once), a line whose strokes are gone (kept: its
PNG and label are what count), a file that is not an image, one too large to open and one without a
label are each reported by name (a :class:`HandwritingWarning`) and skipped or kept as said.
:class:`HandwritingDataset` serves the folder the way torchvision's MNIST serves MNIST.

Every store object is one drawing **session** (an id in each manifest line it writes), so that
:func:`split_by_session` can hold out whole sittings: digits drawn in one sitting look alike.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import re
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from mnistlib import config
from mnistlib._support.files import clean_stale, hold_lock, write_bytes
from mnistlib._support.images import MAX_PIXELS
from mnistlib.drawing import DrawingError, prepare_digit
from mnistlib.strokes import StrokeList, Strokes, rasterize

__all__ = [
    "HandwritingDataset",
    "HandwritingStore",
    "HandwritingWarning",
    "Sample",
    "default_folder",
    "label_from_name",
    "new_session_id",
    "split_by_session",
    "stratified_split",
]

MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"  #: held while a drawing is saved or undone (hidden: never taken for an image)
FILES_SESSION = "files"  #: the session of every image file added to the folder (photos, scans)
DRAWINGS = "pad"  #: sub-folder of the pad's PNGs (read through the manifest only)
_LONE_DIGIT = re.compile(r"(?<![0-9A-Za-z])([0-9])(?![0-9A-Za-z])")


class HandwritingWarning(UserWarning):
    """A sample that was skipped: a damaged manifest line, a file that is not an image, no label."""


def _skip(message: str) -> None:
    warnings.warn(message, HandwritingWarning, stacklevel=3)


def default_folder() -> Path:
    """``<data root>/my_digits`` (the data root is ``$MNISTLIB_DATA`` or ``data/``)."""
    return config.data_root() / "my_digits"


@dataclass(frozen=True)
class Sample:
    """One labelled digit: its image file, and for a pad drawing the strokes it was drawn with."""

    label: int
    path: Path
    source: str  #: "pad" (a drawing from the pad) or "file" (an image file added to the folder)
    strokes: list | None = field(default=None, repr=False, compare=False)
    session: str = ""  #: the drawing session it was saved in (see :func:`split_by_session`)


def new_session_id() -> str:
    """A fresh session id: the local time to the second, and 4 random hex digits against clashes."""
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _session_of(entry: dict) -> str:
    """A manifest line's session; a line written before sessions were recorded counts by the day it was
    saved (``saved`` starts with the date), and one without either as ``"unknown"``."""
    session, saved = entry.get("session"), entry.get("saved")
    if isinstance(session, str) and session:
        return session
    return f"day-{saved[:10]}" if isinstance(saved, str) and len(saved) >= 10 else "unknown"


def label_from_name(relative: str | Path) -> int | None:
    """The label of an added image: the nearest folder named 0–9, else the one lone digit in the file
    name (``7.png``, ``7_mine.jpg``, ``scan-7.png``); None when there is none or more than one."""
    relative = Path(relative)
    for part in reversed(relative.parent.parts):
        if re.fullmatch(r"[0-9]", part):
            return int(part)
    found = set(_LONE_DIGIT.findall(relative.stem))
    return int(found.pop()) if len(found) == 1 else None


def _check_strokes(strokes: Any) -> list[list[list[float]]]:
    """Strokes as JSON-ready lists of [x, y] (one decimal), or ValueError saying what is wrong."""
    if not isinstance(strokes, list) or not strokes:
        raise ValueError("no strokes")
    out = []
    for stroke in strokes:
        if not isinstance(stroke, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
            for p in stroke
        ):
            raise ValueError("a stroke is not a list of [x, y] numbers")
        out.append([[round(float(x), 1), round(float(y), 1)] for x, y in stroke
                    if math.isfinite(x) and math.isfinite(y)])  # a glitchy NaN point is dropped
    return out


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _image_problem(path: Path) -> str | None:
    """Why an added file cannot be a sample (not an image, too large to open), from its header only; None if
    it can."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        return "is too large to open safely"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return "is not an image file"
    if width * height > MAX_PIXELS:
        return f"is too large ({width}×{height} pixels, limit {MAX_PIXELS // 1_000_000} megapixels)"
    return None


def _listed_file(line: str) -> str | None:
    """The ``file`` a manifest line lists, or None for a line that lists none (damaged)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry.get("file") if isinstance(entry, dict) else None


class HandwritingStore:
    """The folder of your labelled digits: save pad drawings, undo the last one, list every sample.

    Each store object is one drawing session: the drawings it saves share ``session`` (a new id by
    default; give one to continue a session or to name it).
    """

    def __init__(self, folder: str | Path | None = None, *, session: str | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        self.manifest = self.folder / MANIFEST
        self.session = session or new_session_id()

    def __repr__(self) -> str:
        return f"HandwritingStore({str(self.folder)!r})"

    # ---- the manifest -----------------------------------------------------------------------
    def _lines(self) -> list[str]:
        try:
            return self.manifest.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:  # a folder in its place, no permission: reported, never fatal
            _skip(f"{self.manifest.name} cannot be read ({exc.strerror or exc}): no pad drawings listed")
            return []

    def _parse(self, line: str, number: int) -> Sample:
        """A manifest line → its Sample, or ValueError saying why the line cannot be used. Strokes that are
        missing or damaged cost only the strokes (reported): the PNG and the label are the sample."""
        entry = json.loads(line)
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        label, file = entry.get("label"), entry.get("file")
        if type(label) is not int or not 0 <= label <= 9:
            raise ValueError(f"label {label!r} is not a digit 0–9")
        if not isinstance(file, str) or not re.fullmatch(rf"{DRAWINGS}/[\w.-]+\.png", file):
            raise ValueError(f"file {file!r} is not a PNG in {DRAWINGS}/")
        path = self.folder / file
        if not path.is_file():
            raise ValueError(f"its image {file} is missing")
        try:
            strokes = _check_strokes(entry.get("strokes"))
        except ValueError as exc:
            _skip(f"{self.manifest.name} line {number} has no usable strokes ({exc}): its {file} and label kept")
            strokes = None
        return Sample(label, path, "pad", strokes, _session_of(entry))

    def _entries(self) -> list[tuple[int, Sample | None]]:
        """(line number, Sample or None when damaged or repeating an earlier line's PNG) for every non-blank
        manifest line."""
        out: list[tuple[int, Sample | None]] = []
        first: dict[Path, int] = {}
        for number, line in enumerate(self._lines(), start=1):
            if not line.strip():
                continue
            try:
                sample = self._parse(line, number)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                out.append((number, None))
                _skip(f"{self.manifest.name} line {number} is damaged ({exc}): skipped")
                continue
            if sample.path in first:
                out.append((number, None))
                _skip(f"{self.manifest.name} line {number} repeats line {first[sample.path]} "
                      f"({sample.path.relative_to(self.folder)}): counted once")
                continue
            first[sample.path] = number
            out.append((number, sample))
        return out

    def drawings(self) -> list[Sample]:
        """The pad drawings in the order they were saved (damaged lines reported and skipped, a PNG listed
        twice counted once)."""
        return [s for _, s in self._entries() if s is not None]

    def _next_number(self) -> int:
        """One more than any drawing number in use: by a PNG, or by a manifest line (even one whose PNG is gone)."""
        names = [p.name for p in (self.folder / DRAWINGS).glob("*")]
        names += re.findall(rf'"{DRAWINGS}/(\d+)_', "\n".join(self._lines()))
        used = [int(m.group(1)) for m in (re.match(r"(\d+)", name) for name in names) if m]
        return max(used, default=0) + 1

    def add_drawing(self, strokes: StrokeList | Strokes, label: int, *, size: int = 280,
                    brush: float = 20.0) -> Sample:
        """Save a drawing with its label: the PNG first, then the manifest line (each atomically)."""
        if type(label) is not int or not 0 <= label <= 9:
            raise ValueError(f"label must be a digit 0–9, got {label!r}")
        plain = _check_strokes([[list(p) for p in s] for s in strokes])
        pixels = _png(255 - rasterize(plain, size, brush))  # black on white
        (self.folder / DRAWINGS).mkdir(parents=True, exist_ok=True)
        with hold_lock(self.folder / LOCK):  # another process saving now waits: no number taken twice
            self._clean_stale()
            name = f"{DRAWINGS}/{self._next_number():05d}_{label}.png"
            write_bytes(self.folder / name, pixels)
            entry = {"file": name, "label": label, "size": int(size), "brush": float(brush),
                     "saved": _dt.datetime.now().isoformat(timespec="seconds"), "session": self.session,
                     "strokes": plain}
            self._write_lines([*self._lines(), json.dumps(entry)])
        return Sample(label, self.folder / name, "pad", plain, self.session)

    def _clean_stale(self) -> None:
        """Remove the temporaries that saves killed mid-write left (their process no longer exists)."""
        clean_stale(self.folder, targets=lambda name: name == MANIFEST)
        clean_stale(self.folder / DRAWINGS, targets=lambda name: name.endswith(".png"))

    def _write_lines(self, lines: list[str]) -> None:
        """Replace the manifest with ``lines``, atomically (hold the lock)."""
        write_bytes(self.manifest, "".join(line + "\n" for line in lines).encode("utf-8"))

    def remove_last(self) -> Sample | None:
        """Remove the newest pad drawing: every manifest line that lists its PNG, then the PNG; None when
        there is none. Lines of other drawings, damaged ones included, stay as they are."""
        if not self.manifest.parent.is_dir():
            return None
        with hold_lock(self.folder / LOCK):
            drawings = self.drawings()
            if not drawings:
                return None
            sample = drawings[-1]
            lines = self._lines()
            keep = [line for line in lines if _listed_file(line) != sample.path.relative_to(self.folder).as_posix()]
            self._write_lines(keep)
            sample.path.unlink(missing_ok=True)  # no line lists it any more
        return sample

    # ---- added image files ------------------------------------------------------------------
    def image_files(self) -> list[Sample]:
        """Images added to the folder (labelled by folder or file name); others reported and skipped."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder)
            if (not path.is_file() or rel.parts[0] == DRAWINGS or rel == Path(MANIFEST)
                    or any(part.startswith(".") for part in rel.parts)):
                continue  # the pad's own files, and hidden ones (temporary files among them)
            problem = _image_problem(path)
            if problem:
                _skip(f"{rel} {problem}: skipped")
                continue
            label = label_from_name(rel)
            if label is None:
                _skip(f"{rel} has no label: name it like 7_name.png or put it in a folder named 7; skipped")
                continue
            out.append(Sample(label, path, "file", session=FILES_SESSION))
        return out

    def samples(self) -> list[Sample]:
        """Every sample: the pad drawings, then the added image files."""
        return self.drawings() + self.image_files()

    def counts(self) -> list[int]:
        """How many samples of each digit 0–9."""
        counts = [0] * 10
        for s in self.samples():
            counts[s.label] += 1
        return counts

    def next_digit(self) -> int:
        """The digit to draw next to keep the set balanced: the rarest one (lowest first on ties)."""
        counts = self.counts()
        return counts.index(min(counts))


class HandwritingDataset(Dataset):
    """The folder's digits served like torchvision's MNIST: ``(image, label)`` pairs.

    Each image goes through :func:`~mnistlib.drawing.prepare_digit` once, when the dataset is made;
    images it cannot read are reported and listed in ``skipped``. Without ``transform`` an item is
    the float tensor [1, 28, 28] normalised with ``mean``/``std`` — exactly what
    :func:`~mnistlib.drawing.preprocess` gives. With ``transform`` (e.g. a torchvision pipeline
    made for MNIST), it gets the 28×28 8-bit Pillow image, as torchvision's MNIST gives it.
    """

    def __init__(self, folder: str | Path | HandwritingStore | None = None, *, mean: float | None = None,
                 std: float | None = None, transform: Callable | None = None,
                 target_transform: Callable | None = None, samples: Sequence[Sample] | None = None) -> None:
        if transform is None and (mean is None or std is None):
            raise ValueError("give mean= and std= (the model's normalisation), or a transform")
        self.store = folder if isinstance(folder, HandwritingStore) else HandwritingStore(folder)
        self.mean, self.std = mean, std
        self.transform, self.target_transform = transform, target_transform
        self.samples: list[Sample] = []
        self.skipped: list[tuple[Path, str]] = []
        images = []
        for sample in self.store.samples() if samples is None else samples:
            try:
                images.append(prepare_digit(sample.path))
            except DrawingError as exc:
                self.skipped.append((sample.path, str(exc)))
                _skip(f"{sample.path.name}: {exc} Skipped.")
                continue
            self.samples.append(sample)
        self.images = np.stack(images) if images else np.zeros((0, 28, 28), np.float32)
        self.targets = torch.tensor([s.label for s in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is None:
            x = ((torch.from_numpy(image) - float(self.mean)) / float(self.std)).reshape(1, 28, 28)
        else:
            x = self.transform(Image.fromarray(np.uint8(np.round(image * 255)), mode="L"))
        label = int(self.targets[index])
        return x, (self.target_transform(label) if self.target_transform else label)

    def uint8_images(self) -> torch.Tensor:
        """All images as uint8 [N, 28, 28] (ink 255), the form MNIST's own tensors take."""
        return torch.from_numpy(np.uint8(np.round(self.images * 255)))


def stratified_split(labels: Sequence[int] | torch.Tensor, held_out: float = 0.3,
                     seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (fine-tune, held out): the same fraction of every digit held out, chosen at random
    with ``seed``; a digit with at least two samples keeps one on each side."""
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out is a fraction in [0, 1), got {held_out}")
    labels = [int(v) for v in labels]
    rng = np.random.default_rng(seed)
    tune, held = [], []
    for digit in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == digit]
        rng.shuffle(idx)
        k = math.floor(len(idx) * held_out + 0.5)
        if len(idx) >= 2 and held_out > 0:
            k = min(max(k, 1), len(idx) - 1)
        held += idx[:k]
        tune += idx[k:]
    return sorted(tune), sorted(held)


def split_by_session(sessions: Sequence[str], held_out: float = 0.3,
                     seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (fine-tune, held out) that keep every session whole on one side: the sessions, in an order
    shuffled with ``seed``, are held out one after another, stopping where the held-out share of the
    samples is closest to ``held_out``; at least one session is held out and one kept.
    ValueError with fewer than two sessions."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out is a fraction in (0, 1), got {held_out}")
    sessions = [str(s) for s in sessions]
    names = sorted(set(sessions))
    if len(names) < 2:
        raise ValueError(f"holding out whole sessions needs at least two; these samples come from {len(names)}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    sizes = np.cumsum([sessions.count(name) for name in order])[:-1]  # hold out 1 … all but one session
    k = int(np.argmin(np.abs(sizes - held_out * len(sessions)))) + 1
    held_names = set(order[:k])
    held = [i for i, s in enumerate(sessions) if s in held_names]
    tune = [i for i, s in enumerate(sessions) if s not in held_names]
    return tune, held
