"""MNIST loading, the train/validation split, normalisation and augmentation.

Two paths to the same tensors: the classic ``torchvision`` Dataset + DataLoader (one PIL image
at a time, as most tutorials do), and a fast in-memory path that keeps the whole set as one
uint8 tensor and slices, augments and normalises whole batches at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from ._support import files
from ._support.idx import (
    RAW_FILES,
    IDXFormatError,
    check_header,
    check_labels,
    expected_size,
    read_idx_file,
    read_idx_folder,
    validate_idx,
)
from .config import DATA_ENV, data_root

__all__ = [
    "RAW_FILES",
    "MNISTNotFoundError",
    "MNISTCorruptError",
    "HOW_TO_FIX",
    "IDXFormatError",
    "load_mnist",
    "mnist_tensors",
    "import_idx",
    "read_idx_file",
    "validate_idx",
    "clean_stale_imports",
    "split_indices",
    "normalization_constants",
    "normalize",
    "Augment",
    "AUGMENTATIONS",
    "list_augmentations",
    "get_augment",
    "torchvision_transform",
    "TensorLoader",
    "DataBundle",
    "get_data",
    "torchvision_loaders",
]

#: The two ways to get MNIST into the data root, as one sentence (every data error ends with it).
HOW_TO_FIX = (
    "fix it in one of two ways: connect to the internet and run again (torchvision downloads MNIST), or copy "
    "the four IDX files (plain or .gz) from a folder you have with `python -m mnistlib data import "
    f"/path/to/folder`; set {DATA_ENV} to use another data root"
)


class MNISTNotFoundError(FileNotFoundError):
    """MNIST cannot be had from the data root: the files are missing and could not be downloaded,
    or (:class:`MNISTCorruptError`) one of them is corrupt.

    Its message is one line that names the problem and ends with the two ways to fix it
    (:data:`HOW_TO_FIX`), so a command line can print ``str(exc)`` whole.
    """


class MNISTCorruptError(MNISTNotFoundError):
    """An MNIST file in the data root is truncated, corrupt or of the wrong kind; ``file`` is its path."""

    def __init__(self, message: str, file: Path) -> None:
        super().__init__(message)
        self.file = file


def raw_dir(root: str | Path | None = None) -> Path:
    """``<root>/MNIST/raw``, where torchvision looks for (and downloads) the IDX files."""
    return Path(root if root is not None else data_root()) / "MNIST" / "raw"


def _missing(root: Path) -> list[str]:
    return [name for name in RAW_FILES if not (raw_dir(root) / name).is_file()]


def _split_files(train: bool) -> list[str]:
    return [name for name in RAW_FILES if name.startswith("train" if train else "t10k")]


def _check_in_root(root: Path, train: bool) -> None:
    """Check the split's two files in the data root (header, size, labels 0–9) before torchvision
    reads them: a file that did not come through ``data import`` may be anything. Reads only the
    headers and the labels, not the images."""
    for name in _split_files(train):
        path = raw_dir(root) / name
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                head = fh.read(16 if RAW_FILES[name][0] == 2051 else expected_size(name) + 1)
        except OSError as exc:
            raise MNISTNotFoundError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}); "
                                     f"{HOW_TO_FIX}") from None
        try:
            check_header(name, head, size)
            check_labels(name, head)
        except IDXFormatError as exc:
            problem = str(exc).removeprefix(f"{name}: ")
            raise MNISTCorruptError(
                f"{path}: {problem}, so the file is truncated or corrupt: delete it, then {HOW_TO_FIX}", path
            ) from None


def load_mnist(
    train: bool = True,
    root: str | Path | None = None,
    transform: object | None = None,
    download: bool = True,
) -> torchvision.datasets.MNIST:
    """The torchvision MNIST dataset from the data root, downloading it when missing.

    With no files and no network, raise :class:`MNISTNotFoundError` naming the missing files
    and the two ways to fix it, instead of torchvision's long traceback; a file that is there but
    truncated or corrupt raises :class:`MNISTCorruptError` naming it.
    """
    root = Path(root) if root is not None else data_root()
    missing = _missing(root)
    if not any(name in missing for name in _split_files(train)):
        _check_in_root(root, train)
    try:
        return torchvision.datasets.MNIST(
            root=str(root), train=train, transform=transform, download=download and bool(missing)
        )
    except Exception as exc:  # network errors, checksum errors, "Dataset not found"
        missing = _missing(root)
        problem = (
            f"MNIST is not in {raw_dir(root)} (missing: {', '.join(missing)}) and could not be "
            f"downloaded ({type(exc).__name__})"
            if missing
            else f"the MNIST files in {raw_dir(root)} could not be read ({type(exc).__name__}): "
            "they may be truncated or corrupt, delete them first"
        )
        raise MNISTNotFoundError(f"{problem}; {HOW_TO_FIX}") from None


@lru_cache(maxsize=4)
def _tensors(train: bool, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_mnist(train=train, root=root)
    return ds.data.contiguous(), ds.targets.to(torch.int64).contiguous()


def mnist_tensors(
    train: bool = True, root: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole set as ``(images uint8 [N, 28, 28], labels int64 [N])``, loaded once per root."""
    root = Path(root) if root is not None else data_root()
    return _tensors(train, str(root.resolve()))


# --------------------------------------------------------------------------- offline import


def clean_stale_imports(root: str | Path | None = None) -> list[Path]:
    """Remove the ``.part`` temporaries that a killed ``data import`` left in ``<root>/MNIST/raw``
    (only those of runs that no longer exist, see :mod:`mnistlib._support.files`); returns them."""
    return files.clean_stale(raw_dir(root), targets=lambda name: name in RAW_FILES)


def import_idx(source: str | Path, root: str | Path | None = None) -> Path:
    """Copy the four MNIST IDX files (plain or ``.gz``) from ``source`` into the data root.

    Every file is read (with a bound on its size) and validated before anything is written; files
    are written to a temporary name and renamed, with the mode the umask allows, so a bad file or
    an interruption leaves the root unchanged. Temporaries of earlier imports that were killed are
    removed first. Returns the folder written to.
    """
    contents = read_idx_folder(source)
    target = raw_dir(root)
    target.mkdir(parents=True, exist_ok=True)
    clean_stale_imports(root)
    for name, data in contents.items():
        files.atomic_write(target / name, lambda tmp, data=data: tmp.write_bytes(data))
    _tensors.cache_clear()
    return target


# --------------------------------------------------------------------------- split and stats


def split_indices(
    n: int = 60_000, val_size: int = 5_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, disjoint train/validation split of ``range(n)``; both halves sorted."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


@lru_cache(maxsize=4)
def _stats(root: str) -> tuple[float, float]:
    images, _ = _tensors(True, root)
    images = images[split_indices(len(images), 5_000, seed=0)[0]]  # the training split: validation stays unseen
    # Count the 256 grey levels instead of converting 44 million pixels to float64: same numbers.
    counts = torch.bincount(images.flatten(), minlength=256).to(torch.float64)
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts * levels).sum() / n
    var = (counts * (levels - mean) ** 2).sum() / (n - 1)
    return float(mean), float(var.sqrt())


def normalization_constants(root: str | Path | None = None) -> tuple[float, float]:
    """Mean and standard deviation of the training split's pixels (55,000 images, the 5,000 validation
    images left out like any unseen image), scaled to 0–1 (≈0.1307, 0.3081)."""
    root = Path(root) if root is not None else data_root()
    return _stats(str(root.resolve()))


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Standardise pixels in 0–1 with the dataset's constants."""
    return (x - mean) / std


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Random per-image geometry applied to a whole batch at once (one affine warp each).

    ``rotation``: max degrees either way; ``crop_p``/``crop_size``: with probability ``crop_p``
    take the centre ``crop_size``×``crop_size`` and scale it back to 28×28 (a zoom);
    ``shift``: max translation in pixels either way; ``scale``: max zoom either way as a fraction
    (0.1: the digit drawn 90–110 % of its size), so the model meets thinner, smaller and bigger digits.
    ``elastic``: max local displacement in pixels of a smooth random warp (an *elastic distortion*,
    Simard et al. 2003): random offsets on a 4×4 grid, interpolated bicubically over the image, bend
    strokes the way different hands do.
    """

    rotation: float = 0.0
    crop_p: float = 0.0
    crop_size: int = 22
    shift: float = 0.0
    scale: float = 0.0
    elastic: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")
        if not 0 <= self.elastic <= 8:
            raise ValueError(f"elastic is a displacement in pixels in [0, 8], got {self.elastic}")

    def __repr__(self) -> str:
        """Only what this augmentation does: ``Augment(rotation=5)``, not every field at its default."""
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                 if getattr(self, f.name) != f.default or (f.name == "crop_size" and self.crop_p > 0)]
        return f"Augment({', '.join(shown)})"

    @property
    def is_identity(self) -> bool:
        return (self.rotation == 0 and (self.crop_p == 0 or self.crop_size >= 28) and self.shift == 0
                and self.scale == 0 and self.elastic == 0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Warp a float batch ``[B, 1, H, W]`` with pixels in 0–1 (background 0)."""
        if self.is_identity:
            return x
        b, _, h, w = x.shape

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(x.device)

        angle = (rand(b) * 2 - 1) * math.radians(self.rotation)
        scale = torch.ones(b, device=x.device)
        if self.crop_p > 0:
            zoom = rand(b) < self.crop_p
            scale = torch.where(zoom, torch.full_like(scale, self.crop_size / w), scale)
        if self.scale > 0:  # the grid samples a window 1/zoom the size: zoom > 1 draws the digit bigger
            scale = scale / (1 + (rand(b) * 2 - 1) * self.scale)
        pixels = torch.tensor([w, h], device=x.device)  # grid units are 2 / pixels
        shift = (rand(b, 2) * 2 - 1) * self.shift * 2 / pixels
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        if self.elastic > 0:  # a smooth offset field, in pixels, turned into grid units (2 / size)
            coarse = (rand(b, 2, 4, 4) * 2 - 1) * self.elastic
            field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
            grid = grid + (field * 2 / pixels.view(1, 2, 1, 1)).permute(0, 2, 3, 1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


#: The series' named augmentations: none (the BatchNorm net), RandomRotation(5) (the
#: DigitRecognizerCNN recipe), random CenterCrop(22) with p = 0.1 + rotation ±15° (the
#: 1×1-convolution net), a small rotation + shift, and the same with a ±10 % zoom (the record recipe).
AUGMENTATIONS: dict[str, Augment] = {
    "none": Augment(),
    "rotate5": Augment(rotation=5),
    "crop-rotate15": Augment(rotation=15, crop_p=0.1, crop_size=22),
    "shift2": Augment(shift=2),
    "rotate10-shift2": Augment(rotation=10, shift=2),
    "rotate10-shift2-scale10": Augment(rotation=10, shift=2, scale=0.1),
}


def list_augmentations() -> list[str]:
    """Names accepted wherever an augmentation is asked for."""
    return list(AUGMENTATIONS)


def get_augment(augment: str | Augment | None) -> Augment:
    """An :class:`Augment` from a name (or pass one through); unknown names list the known ones."""
    if augment is None:
        return AUGMENTATIONS["none"]
    if isinstance(augment, Augment):
        return augment
    try:
        return AUGMENTATIONS[augment]
    except KeyError:
        raise KeyError(
            f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTATIONS)}"
        ) from None


def torchvision_transform(
    augment: str | Augment | None, mean: float, std: float
) -> v2.Compose:
    """The classic per-image torchvision (v2) pipeline for the same augmentation, on PIL images."""
    aug = get_augment(augment)
    if aug.elastic:
        raise ValueError("the torchvision pipeline has no equivalent of Augment.elastic (torchvision's "
                         "ElasticTransform draws a different field): use get_data's in-memory batches")
    steps: list[object] = []
    if aug.crop_p > 0 and aug.crop_size < 28:
        steps.append(v2.RandomApply([v2.CenterCrop(aug.crop_size), v2.Resize(28)], p=aug.crop_p))
    if aug.shift or aug.scale:
        steps.append(v2.RandomAffine(degrees=aug.rotation, translate=(aug.shift / 28, aug.shift / 28),
                                     scale=(1 - aug.scale, 1 + aug.scale) if aug.scale else None))
    elif aug.rotation:
        steps.append(v2.RandomRotation(aug.rotation))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])]
    return v2.Compose(steps)


# --------------------------------------------------------------------------- loaders


class TensorLoader:
    """Batches sliced from in-memory uint8 images: shuffle, augment and normalise per batch.

    Behaves like a DataLoader (iterate for ``(x, y)``, ``len()`` is the number of batches) but
    pays no per-image Python or PIL cost. Shuffling and augmentation are seeded: epoch ``k`` of
    a loader built with ``seed`` is the same on every run.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = True,
        augment: str | Augment | None = "none",
        mean: float = 0.0,
        std: float = 1.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError("images must be a uint8 tensor [N, H, W]")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = get_augment(augment)
        self.mean, self.std = mean, std
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def dataset_size(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images at ``idx`` as a normalised float batch ``[B, 1, 28, 28]``, augmented if set."""
        x = self.images[idx].unsqueeze(1).to(torch.float32).div_(255.0)
        x = self.augment(x, generator)
        return normalize(x, self.mean, self.std)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(self.images)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.batch(idx, gen), self.labels[idx]


@dataclass
class DataBundle:
    """The loaders a training run needs, and the constants they normalise with."""

    train: TensorLoader
    val: TensorLoader
    test: TensorLoader
    mean: float
    std: float
    augment: str = "none"


def get_data(
    batch_size: int = 128,
    augment: str | Augment | None = "none",
    val_size: int = 5_000,
    subset: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    root: str | Path | None = None,
    eval_batch_size: int = 1_000,
) -> DataBundle:
    """In-memory train/validation/test loaders (train shuffled and augmented, the others not).

    ``subset=N`` keeps a seeded random N of the training split — for quick runs; validation
    and test stay whole so their numbers mean the same thing.
    """
    images, labels = mnist_tensors(True, root)
    test_images, test_labels = mnist_tensors(False, root)
    mean, std = normalization_constants(root)
    train_idx, val_idx = split_indices(len(images), val_size, seed=0)
    if subset is not None:
        if not 1 <= subset <= len(train_idx):
            raise ValueError(f"subset must be between 1 and the {len(train_idx):,} training images, got {subset:,}")
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
        train_idx = train_idx[pick[:subset]].sort().values
    common = dict(mean=mean, std=std, device=device)
    name = augment if isinstance(augment, str) else "custom"
    return DataBundle(
        train=TensorLoader(
            images[train_idx], labels[train_idx], batch_size, True, augment, seed=seed, **common
        ),
        val=TensorLoader(images[val_idx], labels[val_idx], eval_batch_size, False, **common),
        test=TensorLoader(test_images, test_labels, eval_batch_size, False, **common),
        mean=mean,
        std=std,
        augment=name,
    )


def torchvision_loaders(
    batch_size: int = 128,
    augment: str | Augment | None = "none",
    val_size: int = 5_000,
    num_workers: int = 0,
    root: str | Path | None = None,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """The classic path: torchvision MNIST + per-image transforms + DataLoader (train, val, test)."""
    mean, std = normalization_constants(root)
    train_tf = torchvision_transform(augment, mean, std)
    plain_tf = torchvision_transform("none", mean, std)
    train_full = load_mnist(True, root, transform=train_tf)
    val_full = load_mnist(True, root, transform=plain_tf)
    test = load_mnist(False, root, transform=plain_tf)
    train_idx, val_idx = split_indices(len(train_full), val_size, seed=0)
    gen = torch.Generator().manual_seed(seed)
    kw = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    return (
        DataLoader(Subset(train_full, train_idx.tolist()), batch_size, shuffle=True,
                   generator=gen, **kw),
        DataLoader(Subset(val_full, val_idx.tolist()), 1_000, shuffle=False, **kw),
        DataLoader(test, 1_000, shuffle=False, **kw),
    )
