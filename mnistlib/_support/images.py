"""Reading any image input — a file, a Pillow image, an array, a tensor — as grayscale pixels in 0..1.

Files are opened safely (a size limit before decoding, truncated files refused), arrays of any
dtype and layout (H×W, H×W×C, C×H×W, with or without alpha) are composited onto white and scaled
to 0..1, and large inputs are box-reduced first. Every problem is one :class:`DrawingError` line.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DrawingError", "MAX_SIDE", "MAX_PIXELS", "load_image", "to_gray"]

MAX_SIDE = 2048  #: larger inputs are box-reduced to this size first (plenty for a 20 px digit)
MAX_PIXELS = 120_000_000  #: refuse image files larger than this (a 10,000×10,000 scan is fine)


class DrawingError(ValueError):
    """An input that cannot be read as a digit; the message is one line meant for the learner."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def load_image(path: str | Path) -> Image.Image:
    """Open an image file (PNG, JPEG, …) safely, or raise :class:`DrawingError` saying why not."""
    path = Path(path).expanduser()
    name = path.name or str(path)
    if not path.exists():
        raise DrawingError(f"No such file: {path}")
    if path.is_dir():
        raise DrawingError(f"{path} is a folder, not an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise DrawingError(
                    f"{name} is too large ({w}×{h} px, limit {MAX_PIXELS // 1_000_000} "
                    "megapixels): shrink it first."
                )
            img.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at a reduced scale: cheap
            img.load()
            img = ImageOps.exif_transpose(img) or img  # phone photos: honour the orientation
    except DrawingError:
        raise
    except Image.DecompressionBombError:
        raise DrawingError(f"{name} is too large to open safely: shrink it first.") from None
    except UnidentifiedImageError:
        raise DrawingError(f"{name} is not an image file Pillow can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DrawingError(f"Could not read {name}: {exc}") from None
    return img


def _scale_to_unit(a: np.ndarray) -> np.ndarray:
    """Numbers of any dtype → float32 in 0..1, guessing the range (8-bit, 16-bit, 0..1, other)."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    f = a.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise DrawingError("The image contains NaN or infinite values.")
    lo, hi = float(f.min()), float(f.max())
    if lo >= 0 and hi <= 1:
        out = f
    elif lo >= 0 and hi <= 255:
        out = f / 255.0
    elif lo >= 0 and hi <= 65535:
        out = f / 65535.0
    elif hi > lo:  # unknown range: stretch (halves avoid overflow near the float64 limits)
        out = (f / 2 - lo / 2) / (hi / 2 - lo / 2)
    else:
        out = np.zeros_like(f)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _array_channels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a scaled 2-D/3-D array into (gray, alpha or None)."""
    if a.ndim == 2:
        return a, None
    c = a.shape[-1]
    if c == 1:
        return a[..., 0], None
    if c == 2:
        return a[..., 0], a[..., 1]
    rgb = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114  # ITU-R 601, like Pillow
    return rgb.astype(np.float32), (a[..., 3] if c == 4 else None)


def _composite(gray: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Flatten transparency onto a background that contrasts with the visible ink."""
    if alpha is None or float(alpha.min()) >= 1.0:
        return gray
    weight = float(alpha.sum())
    if weight <= 0:
        raise DrawingError("The image is fully transparent: there is nothing to read.")
    ink_level = float((gray * alpha).sum()) / weight
    background = 1.0 if ink_level < 0.5 else 0.0  # dark marks go on white, light marks on black
    return (gray * alpha + background * (1.0 - alpha)).astype(np.float32)


def _block_reduce(a: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Average blocks of pixels so the longer side is at most ``max_side``."""
    factor = math.ceil(max(a.shape) / max_side)
    if factor <= 1:
        return a
    h, w = a.shape
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    return a.reshape(a.shape[0] // factor, factor, a.shape[1] // factor, factor).mean(axis=(1, 3))


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    """A Pillow image of any mode → float32 grayscale in 0..1 (transparency flattened)."""
    if img.width == 0 or img.height == 0:
        raise DrawingError(f"The image is empty ({img.width}×{img.height} pixels).")
    try:
        img.load()  # a closed image, or a file that turns out truncated, fails here rather than half-way
    except ValueError as exc:  # Pillow's "Operation on closed image"
        raise DrawingError(f"This Pillow image cannot be read ({exc}): was it closed? Pass it open, or "
                           "pass the file's path.") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise DrawingError(f"Could not read this Pillow image: {exc}") from None
    sixteen_bit = img.mode.startswith("I;16")
    if sixteen_bit:
        img = img.convert("I")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif img.mode == "La":
        img = img.convert("LA")
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, …
    if img.mode == "RGB":
        img = img.convert("L")
    elif img.mode == "RGBA":
        img = img.convert("LA")
    if max(img.size) > MAX_SIDE:
        img = img.reduce(math.ceil(max(img.size) / MAX_SIDE))
    a = np.asarray(img)
    if img.mode in ("L", "LA"):
        a = a.astype(np.float32) / 255.0
    elif sixteen_bit:
        a = np.clip(a.astype(np.float32) / 65535.0, 0.0, 1.0)
    else:
        a = _scale_to_unit(a)
    gray, alpha = _array_channels(a)
    return _composite(gray, alpha)


def _tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor of any dtype, layout or device → a numpy array of its values (or DrawingError)."""
    if t.is_nested:
        raise DrawingError("A nested tensor (several images of different sizes) is not one image.")
    if t.is_meta:
        raise DrawingError("A tensor on the 'meta' device holds no pixel values.")
    try:
        t = t.detach()
        if t.is_quantized:
            t = t.dequantize()
        if t.layout != torch.strided:  # sparse COO/CSR/…: the same pixels, stored densely
            t = t.to_dense()
        if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.float()  # bfloat16, float8: NumPy has no such type
        return t.cpu().numpy()
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        raise DrawingError(f"Cannot read this {t.dtype} tensor as an image: {exc}") from None


def _array_to_gray(x: Any) -> np.ndarray:
    """A numpy array / torch tensor / nested list → float32 grayscale in 0..1."""
    if isinstance(x, torch.Tensor):
        x = _tensor_to_numpy(x)
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise DrawingError(f"Cannot read this as an image: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise DrawingError(f"Expected numbers (an image array), got dtype {a.dtype}.")
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        a = a.astype(np.float64)
    while a.ndim > 3 and a.shape[0] == 1:  # a batch of one: [1, 1, H, W]
        a = a[0]
    if a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4) and a.shape[0] in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first (torch layout) → channels last
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4)):
        raise DrawingError(
            f"Expected a 2-D grayscale or 3-D colour image, got an array of shape {a.shape}."
        )
    if a.size == 0:
        raise DrawingError(f"The image is empty (shape {a.shape}).")
    gray, alpha = _array_channels(_scale_to_unit(a))
    gray = _composite(gray, alpha)
    return _block_reduce(gray).astype(np.float32)


def to_gray(image: Any) -> np.ndarray:
    """Read a path, Pillow image, numpy array or tensor as a float32 grayscale array in 0..1."""
    if isinstance(image, str) and not image.strip():
        raise DrawingError("No image file named: the path is empty.")
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_gray(image)
    return _array_to_gray(image)
