"""mnistlib.data: offline loading, the import check, the split, the constants, both loading paths
and the named augmentations. Real MNIST comes from the read-only ``data_root`` fixture; anything
that writes works on copies under ``tmp_path``."""

from __future__ import annotations

import gzip
import math
import os
import subprocess
import tracemalloc
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from idx_helpers import idx_source
from torchvision.transforms import v2

from mnistlib import config, data
from mnistlib._support import files as safefiles
from mnistlib.data import RAW_FILES, IDXFormatError, MNISTNotFoundError

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = RAW_FILES


# --------------------------------------------------------------------------- helpers


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (hidden ones included) → (size, mtime_ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def truncated(raw_dir: Path, name: str, drop: int = 100) -> bytes:
    return (raw_dir / name).read_bytes()[:-drop]


def wrong_magic(raw_dir: Path, name: str) -> bytes:
    return b"\x00\x00\x08\x04" + (raw_dir / name).read_bytes()[4:]


@pytest.fixture(scope="session")
def gz_dir(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four real files gzipped (as published), in a temporary folder."""
    out = tmp_path_factory.mktemp("gz")
    for name in RAW_FILES:
        (out / f"{name}.gz").write_bytes(gzip.compress((raw_dir / name).read_bytes(), compresslevel=1))
    return out


# --------------------------------------------------------------------------- data root and loading


def test_data_root_from_env_else_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path))
    assert config.data_root() == tmp_path.resolve()
    monkeypatch.delenv(config.DATA_ENV)
    assert config.data_root() == config.REPO_ROOT / "data"
    monkeypatch.chdir(tmp_path)  # the notebook's working directory does not matter
    assert config.data_root() == config.REPO_ROOT / "data"


def test_load_offline_copy(data_root: Path) -> None:
    train = data.load_mnist(True, data_root)
    test = data.load_mnist(False, data_root, download=False)
    assert isinstance(train, torchvision.datasets.MNIST)
    assert (len(train), len(test)) == (60_000, 10_000)
    image, label = train[0]
    assert image.size == (28, 28) and label == 5  # the famous first training digit


def test_mnist_tensors(data_root: Path) -> None:
    images, labels = data.mnist_tensors(True, data_root)
    assert images.shape == (60_000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60_000,) and labels.dtype == torch.int64
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    test_images, _ = data.mnist_tensors(False, data_root)
    assert test_images.shape == (10_000, 28, 28)
    assert data.mnist_tensors(True, data_root)[0] is images  # cached


def test_env_variable_picks_the_root(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.setenv(config.DATA_ENV, str(data_root))
    assert len(data.load_mnist(False)) == 10_000


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download attempt fails with URLError (and records its URL); nothing leaves the machine."""
    tried: list[str] = []

    def fail(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    monkeypatch.setattr("urllib.request.urlopen", fail)
    return tried


def test_missing_files_without_network(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(MNISTNotFoundError) as info:
        data.load_mnist(True, tmp_path)
    msg = str(info.value)
    assert no_network, "a download should have been attempted"
    assert str(tmp_path / "MNIST" / "raw") in msg
    for name in RAW_FILES:
        assert name in msg
    assert "internet" in msg and "python -m mnistlib data import" in msg and config.DATA_ENV in msg
    assert "Traceback" not in msg and info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value, FileNotFoundError)


def test_missing_files_message_is_one_line_with_both_fixes(tmp_path: Path, no_network: list[str]) -> None:
    """A command line prints the first line of an error: it must carry the fixes, not only the problem."""
    with pytest.raises(MNISTNotFoundError) as info:
        data.mnist_tensors(True, tmp_path)
    first = str(info.value).splitlines()[0]
    assert first == str(info.value)
    assert "connect to the internet" in first and "python -m mnistlib data import /path/to/folder" in first
    assert TRAIN_IMAGES in first and config.DATA_ENV in first


def test_missing_files_lists_only_the_missing(tmp_path: Path, raw_dir: Path, no_network: list[str]) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / TEST_LABELS).symlink_to(raw_dir / TEST_LABELS)
    with pytest.raises(MNISTNotFoundError, match="missing: ") as info:
        data.mnist_tensors(False, tmp_path)
    missing = str(info.value).split("missing: ")[1].split(")")[0]
    assert TEST_LABELS not in missing and TEST_IMAGES in missing


def test_no_download_asked(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(MNISTNotFoundError):
        data.load_mnist(False, tmp_path, download=False)
    assert not no_network


def test_corrupt_file_in_root_is_not_called_missing(tmp_path: Path, raw_dir: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    idx_source(raw, raw_dir, TEST_LABELS, truncated(raw_dir, TEST_LABELS))
    with pytest.raises(MNISTNotFoundError, match="truncated or corrupt") as info:
        data.load_mnist(False, tmp_path)
    assert "missing" not in str(info.value)


def _corrupt_root_cases(raw_dir: Path) -> dict[str, tuple[str, bytes, str]]:
    """case → (file in the root to break, its new content, what the message must say)."""
    labels = (raw_dir / TEST_LABELS).read_bytes()
    images = (raw_dir / TEST_IMAGES).read_bytes()
    return {
        "label-10": (TEST_LABELS, labels[:-1] + bytes([10]), "labels outside 0–9"),
        "label-255": (TEST_LABELS, labels[:8] + bytes([255]) + labels[9:], "labels outside 0–9"),
        "fewer-labels": (TEST_LABELS, labels[:4] + (9_999).to_bytes(4, "big") + labels[8:-1], "holds 9999 items"),
        "images-32x32": (TEST_IMAGES, images[:8] + (32).to_bytes(4, "big") * 2 + images[16:], "28×28"),
        "truncated-images": (TEST_IMAGES, images[:-784], "truncated"),
        "padded-labels": (TEST_LABELS, labels + b"\x00", "truncated or padded"),
        "images-as-labels": (TEST_LABELS, images, "magic"),
        "empty": (TEST_IMAGES, b"", "too short"),
    }


CORRUPT_ROOT_CASES = ["label-10", "label-255", "fewer-labels", "images-32x32", "truncated-images",
                      "padded-labels", "images-as-labels", "empty"]


@pytest.mark.parametrize("loader", ["mnist_tensors", "load_mnist", "get_data"])
@pytest.mark.parametrize("case", CORRUPT_ROOT_CASES)
def test_corrupt_root_that_bypassed_import_is_one_clear_error(
    case: str, loader: str, raw_dir: Path, tmp_path: Path, no_network: list[str]
) -> None:
    name, content, says = _corrupt_root_cases(raw_dir)[case]
    idx_source(tmp_path / "MNIST" / "raw", raw_dir, name, content)
    load = {"mnist_tensors": lambda: data.mnist_tensors(False, tmp_path),
            "load_mnist": lambda: data.load_mnist(False, tmp_path),
            "get_data": lambda: data.get_data(root=tmp_path, subset=100)}[loader]
    with pytest.raises(data.MNISTCorruptError) as info:
        load()
    msg = str(info.value)
    assert says in msg and str(tmp_path / "MNIST" / "raw" / name) in msg and "\n" not in msg
    assert info.value.file == tmp_path / "MNIST" / "raw" / name
    assert "data import" in msg and not no_network  # a file is there: nothing downloaded over it
    assert (tmp_path / "MNIST" / "raw" / name).read_bytes() == content  # and nothing deleted


def test_only_the_split_asked_for_is_checked(raw_dir: Path, tmp_path: Path) -> None:
    idx_source(tmp_path / "MNIST" / "raw", raw_dir, TRAIN_LABELS, b"broken")
    images, labels = data.mnist_tensors(False, tmp_path)  # the test split is fine
    assert len(images) == len(labels) == 10_000
    with pytest.raises(data.MNISTCorruptError, match=TRAIN_LABELS):
        data.mnist_tensors(True, tmp_path)


# --------------------------------------------------------------------------- offline import


@pytest.mark.parametrize("kind", ["plain", "gz", "torchvision-layout"])
def test_import_good(kind: str, raw_dir: Path, data_root: Path, gz_dir: Path, tmp_path: Path) -> None:
    source = {"plain": raw_dir, "gz": gz_dir, "torchvision-layout": data_root}[kind]
    root = tmp_path / "root"
    target = data.import_idx(source, root)
    assert target == root / "MNIST" / "raw"
    assert sorted(os.listdir(target)) == sorted(RAW_FILES)  # no temp files left
    for name in (TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        assert (target / name).read_bytes() == (raw_dir / name).read_bytes()
    assert (target / TRAIN_IMAGES).stat().st_size == (raw_dir / TRAIN_IMAGES).stat().st_size
    if kind == "gz":  # what was imported loads, and equals the original
        images, labels = data.mnist_tensors(False, root)
        ref_images, ref_labels = data.mnist_tensors(False, data_root)
        assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)


def _bad_cases(raw_dir: Path) -> dict[str, tuple[str, bytes, str]]:
    """case → (file to break, its new content, what the message must say)."""
    labels = (raw_dir / TEST_LABELS).read_bytes()
    header = (raw_dir / TEST_IMAGES).read_bytes()
    return {
        "truncated-images": (TEST_IMAGES, truncated(raw_dir, TEST_IMAGES), "truncated"),
        "truncated-labels": (TRAIN_LABELS, truncated(raw_dir, TRAIN_LABELS, 1), "truncated"),
        "wrong-magic": (TEST_IMAGES, wrong_magic(raw_dir, TEST_IMAGES), "magic"),
        "labels-as-images": (TEST_IMAGES, labels, "magic"),
        "wrong-count": (TEST_LABELS, labels[:4] + (9_999).to_bytes(4, "big") + labels[8:-1], "items"),
        "wrong-shape": (TEST_IMAGES, header[:8] + (32).to_bytes(4, "big") * 2 + header[16:], "28×28"),
        "bad-label": (TEST_LABELS, labels[:-1] + bytes([10]), "0–9"),
        "empty": (TEST_LABELS, b"", "too short"),
        "truncated-gz": (TEST_LABELS, gzip.compress(labels)[:-30], "gzip"),
        "corrupt-gz": (TEST_LABELS, _corrupt_gz(labels, at=10), "gzip"),
        "crc-gz": (TEST_LABELS, _corrupt_gz(labels), "gzip"),
    }


def _corrupt_gz(content: bytes, at: int | None = None) -> bytes:
    """Gzip ``content``, then overwrite 8 bytes: at the deflate header (zlib.error) or mid-stream (CRC)."""
    gz = bytearray(gzip.compress(content, mtime=0))
    at = len(gz) // 2 if at is None else at
    gz[at : at + 8] = b"\xff" * 8
    return bytes(gz)


BAD_CASES = [
    "truncated-images", "truncated-labels", "wrong-magic", "labels-as-images", "wrong-count",
    "wrong-shape", "bad-label", "empty", "truncated-gz", "corrupt-gz", "crc-gz",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_import_refuses_bad_file(case: str, raw_dir: Path, tmp_path: Path) -> None:
    name, content, says = _bad_cases(raw_dir)[case]
    source = idx_source(tmp_path / "source", raw_dir, name, content)
    if case.endswith("-gz"):
        (source / name).rename(source / f"{name}.gz")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(IDXFormatError) as info:
        data.import_idx(source, root)
    assert name in str(info.value) and says in str(info.value)
    assert snapshot(root) == {}  # nothing written, not even a folder's worth of temp files


def test_bad_import_leaves_existing_root_unchanged(raw_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    data.import_idx(raw_dir, root)
    before = snapshot(root)
    source = idx_source(tmp_path / "source", raw_dir, TRAIN_LABELS, wrong_magic(raw_dir, TRAIN_LABELS))
    with pytest.raises(IDXFormatError, match=TRAIN_LABELS):
        data.import_idx(source, root)
    assert snapshot(root) == before


def test_import_missing_source_file(raw_dir: Path, tmp_path: Path) -> None:
    source = idx_source(tmp_path / "source", raw_dir)
    (source / TEST_IMAGES).unlink()
    with pytest.raises(IDXFormatError, match=f"{TEST_IMAGES} \\(or {TEST_IMAGES}.gz\\) not found"):
        data.import_idx(source, tmp_path / "root")
    with pytest.raises(IDXFormatError, match="not a folder"):
        data.import_idx(tmp_path / "nowhere", tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_interrupted_write_leaves_no_temp_file(
    raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(src: str, dst: object) -> None:
        raise OSError("disk full (test)")

    monkeypatch.setattr(data.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        data.import_idx(raw_dir, tmp_path / "root")
    assert snapshot(tmp_path / "root") == {}


def _gzip_bomb(megabytes: int) -> bytes:
    """Under a megabyte on disk that expands to ``megabytes`` MB of zeros (concatenated gzip members)."""
    return gzip.compress(bytes(1 << 20), compresslevel=9) * megabytes


def _peak_memory(fn: Callable[[], object]) -> tuple[int, BaseException | None]:
    """(the most bytes Python held at once while ``fn`` ran, what it raised)."""
    tracemalloc.start()
    try:
        fn()
        raised = None
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def test_a_gzip_bomb_is_refused_without_being_expanded(raw_dir: Path, tmp_path: Path) -> None:
    source = idx_source(tmp_path / "source", raw_dir, TRAIN_LABELS, _gzip_bomb(400))
    bomb = (source / TRAIN_LABELS).rename(source / f"{TRAIN_LABELS}.gz")
    assert bomb.stat().st_size < 1_000_000  # 400 MB once expanded
    peak, raised = _peak_memory(lambda: data.read_idx_file(bomb, TRAIN_LABELS))
    assert isinstance(raised, IDXFormatError) and "decompresses to more than" in str(raised)
    assert peak < 4 << 20, f"held {peak / 2**20:.0f} MB at once to refuse a 60 kB file"
    peak, raised = _peak_memory(lambda: data.import_idx(source, tmp_path / "root"))
    assert isinstance(raised, IDXFormatError) and f"{TRAIN_LABELS}.gz" in str(raised)
    assert peak < 100 << 20  # the real 47 MB training images, not the bomb's 400 MB
    assert not (tmp_path / "root").exists()


def test_a_huge_plain_file_is_refused_without_being_read(raw_dir: Path, tmp_path: Path) -> None:
    source = idx_source(tmp_path / "source", raw_dir)
    (source / TEST_LABELS).unlink()
    with open(source / TEST_LABELS, "wb") as fh:
        fh.truncate(4 << 30)  # a sparse 4 GB file: reading it whole would take 4 GB
    peak, raised = _peak_memory(lambda: data.read_idx_file(source / TEST_LABELS, TEST_LABELS))
    assert isinstance(raised, IDXFormatError) and "truncated or padded" in str(raised) and peak < 1 << 20


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_imported_files_respect_the_umask(raw_dir: Path, tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        target = data.import_idx(raw_dir, tmp_path / "root")
    finally:
        os.umask(old)
    assert {(target / name).stat().st_mode & 0o777 for name in RAW_FILES} == {mode}


def test_import_removes_what_a_killed_import_left(raw_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = safefiles.owner_tag().split("-")[1]
    stale = raw / f".{TRAIN_IMAGES}.{gone.pid}-{host}.abc123.part"  # a dead import's temporary
    live = raw / f".{TEST_IMAGES}.{os.getpid()}-{host}.def456.part"  # a live one's (ours)
    mine = raw / ".notes.part"  # not an import's: never touched
    for path in (stale, live, mine):
        path.write_bytes(b"half")
    assert data.clean_stale_imports(tmp_path / "root") == [stale]
    stale.write_bytes(b"half")
    data.import_idx(raw_dir, tmp_path / "root")
    assert sorted(p.name for p in raw.iterdir()) == sorted([live.name, mine.name, *RAW_FILES])


# --------------------------------------------------------------------------- split and constants


def test_split_sizes_disjoint_and_complete() -> None:
    train_idx, val_idx = data.split_indices()
    assert (len(train_idx), len(val_idx)) == (55_000, 5_000)
    assert train_idx.dtype == val_idx.dtype == torch.int64
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(60_000))
    small_train, small_val = data.split_indices(1_000, 100, seed=3)
    assert (len(small_train), len(small_val)) == (900, 100)


def test_split_is_stable() -> None:
    a_train, a_val = data.split_indices(seed=0)
    b_train, b_val = data.split_indices(seed=0)
    assert torch.equal(a_train, b_train) and torch.equal(a_val, b_val)
    assert not torch.equal(a_val, data.split_indices(seed=1)[1])
    # Pinned: the same validation images in every run, on every machine.
    assert a_val[:5].tolist() == [1, 3, 47, 49, 80]


@pytest.mark.parametrize("val_size", [-1, 60_000])
def test_split_rejects_bad_sizes(val_size: int) -> None:
    with pytest.raises(ValueError):
        data.split_indices(60_000, val_size)


def test_normalization_constants_are_computed(data_root: Path) -> None:
    mean, std = data.normalization_constants(data_root)
    assert round(mean, 3) == 0.131 and round(std, 4) == 0.3081
    images, _ = data.mnist_tensors(True, data_root)
    assert math.isclose(mean, images[:1000].double().div(255).mean().item(), rel_tol=0.05)
    x = torch.full((2, 1, 28, 28), mean)
    assert torch.allclose(data.normalize(x, mean, std), torch.zeros_like(x))


# --------------------------------------------------------------------------- the two loading paths


def test_in_memory_batch_equals_torchvision(data_root: Path) -> None:
    mean, std = data.normalization_constants(data_root)
    images, labels = data.mnist_tensors(True, data_root)
    idx = data.split_indices()[1][:64]
    ds = data.load_mnist(True, data_root, transform=data.torchvision_transform("none", mean, std))
    tv_x = torch.stack([ds[i][0].as_subclass(torch.Tensor) for i in idx.tolist()])
    tv_y = torch.tensor([ds[i][1] for i in idx.tolist()])
    loader = data.TensorLoader(images, labels, batch_size=64, shuffle=False, mean=mean, std=std)
    x = loader.batch(idx)
    assert x.shape == tv_x.shape == (64, 1, 28, 28) and x.dtype == tv_x.dtype == torch.float32
    torch.testing.assert_close(x, tv_x, rtol=0, atol=1e-6)
    assert torch.equal(labels[idx], tv_y)


def test_bundle_val_equals_torchvision_val_loader(data_root: Path) -> None:
    bundle = data.get_data(batch_size=64, subset=500, root=data_root)
    _, tv_val, _ = data.torchvision_loaders(batch_size=64, root=data_root)
    (x, y), (tv_x, tv_y) = next(iter(bundle.val)), next(iter(tv_val))
    torch.testing.assert_close(x, tv_x.as_subclass(torch.Tensor), rtol=0, atol=1e-6)
    assert torch.equal(y, tv_y)
    assert (bundle.train.dataset_size, bundle.val.dataset_size, bundle.test.dataset_size) == (500, 5_000, 10_000)
    assert (bundle.mean, bundle.std) == data.normalization_constants(data_root)


def test_tensor_loader_batches_and_seeded_shuffle() -> None:
    images = torch.arange(10 * 4, dtype=torch.uint8).reshape(10, 2, 2)
    labels = torch.arange(10)
    loader = data.TensorLoader(images, labels, batch_size=4, seed=7)
    assert len(loader) == 3 and [len(y) for _, y in loader] == [4, 4, 2]
    first = [y for _, y in data.TensorLoader(images, labels, batch_size=4, seed=7)]
    again = [y for _, y in data.TensorLoader(images, labels, batch_size=4, seed=7)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    assert len(data.TensorLoader(images, labels, batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError):
        data.TensorLoader(images.float(), labels)


# --------------------------------------------------------------------------- augmentations


def bar_angles(x: torch.Tensor) -> torch.Tensor:
    """Orientation in degrees of each image's principal axis (from its second moments)."""
    m = x.squeeze(1).double()
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    s = m.sum((1, 2))
    cx, cy = (m * xx).sum((1, 2)) / s, (m * yy).sum((1, 2)) / s
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    mu20, mu02, mu11 = (m * dx**2).sum((1, 2)), (m * dy**2).sum((1, 2)), (m * dx * dy).sum((1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))


def test_named_augmentations_exist() -> None:
    names = data.list_augmentations()
    assert {"none", "rotate5", "crop-rotate15"} <= set(names)
    assert data.get_augment("rotate5") == data.Augment(rotation=5)
    assert data.get_augment("crop-rotate15") == data.Augment(rotation=15, crop_p=0.1, crop_size=22)
    assert data.get_augment(None).is_identity and data.get_augment("none").is_identity


def test_augment_repr_shows_only_what_it_does() -> None:
    assert repr(data.get_augment("none")) == "Augment()"
    assert repr(data.get_augment("rotate10-shift2-scale10")) == "Augment(rotation=10, shift=2, scale=0.1)"
    assert repr(data.Augment(crop_p=0.1)) == "Augment(crop_p=0.1, crop_size=22)"  # the crop's size matters once used
    assert repr(data.Augment(elastic=1.5, crop_size=20)) == "Augment(crop_size=20, elastic=1.5)"


def test_none_is_identity(data_root: Path) -> None:
    x = data.mnist_tensors(False, data_root)[0][:16].unsqueeze(1).float() / 255
    assert torch.equal(data.get_augment("none")(x), x)


@pytest.mark.parametrize("name", ["rotate5", "crop-rotate15", "shift2", "rotate10-shift2", "rotate10-shift2-scale10"])
def test_augmentation_keeps_shape_dtype_and_range(name: str, data_root: Path) -> None:
    x = data.mnist_tensors(False, data_root)[0][:32].unsqueeze(1).float() / 255
    out = data.get_augment(name)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-6
    assert not torch.equal(out, x)
    again = data.get_augment(name)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded → reproducible


@pytest.mark.parametrize(("name", "limit"), [("rotate5", 5), ("crop-rotate15", 15)])
def test_rotation_angles_differ_per_image_within_limit(name: str, limit: float) -> None:
    bar = torch.zeros(64, 1, 28, 28)
    bar[:, :, 13:15, 3:25] = 1.0  # the same horizontal bar 64 times
    angles = bar_angles(data.get_augment(name)(bar, torch.Generator().manual_seed(1)))
    assert float(angles.abs().max()) <= limit + 0.5
    assert len({round(a, 3) for a in angles.tolist()}) == 64  # one angle per image
    assert float(angles.max() - angles.min()) > limit  # both directions used


def test_crop_matches_torchvision_center_crop_and_resize(data_root: Path) -> None:
    images = data.mnist_tensors(False, data_root)[0][:16]
    ours = data.Augment(crop_p=1.0, crop_size=22)(images.unsqueeze(1).float() / 255)
    tv = v2.Compose([v2.CenterCrop(22), v2.Resize(28)])
    theirs = torch.stack([tv(im.unsqueeze(0)) for im in images]).float() / 255
    assert float((ours - theirs).abs().mean()) < 0.01  # vs ≈0.14 for the uncropped image
    crop_p = data.get_augment("crop-rotate15").crop_p
    square = torch.zeros(1_000, 1, 28, 28)
    square[:, :, 8:20, 8:20] = 1.0
    out = data.Augment(crop_p=crop_p, crop_size=22)(square, torch.Generator().manual_seed(0))
    zoomed = (out - square).abs().flatten(1).amax(1).gt(1e-4).float().mean()
    assert abs(float(zoomed) - 0.1) < 0.03  # about one image in ten is zoomed


def test_scale_zooms_each_image_in_or_out_within_limit() -> None:
    square = torch.zeros(256, 1, 28, 28)
    square[:, :, 9:19, 9:19] = 1.0  # a 10×10 square, area 100
    out = data.Augment(scale=0.2)(square, torch.Generator().manual_seed(0))
    area = out.flatten(1).sum(1)  # ink grows with the square of the zoom
    assert float(area.min()) >= 100 * 0.8**2 - 2 and float(area.max()) <= 100 * 1.2**2 + 2
    assert float(area.min()) < 80 and float(area.max()) > 125  # both smaller and bigger digits
    assert not data.Augment(scale=0.2).is_identity


@pytest.mark.parametrize("scale", [-0.1, 1.0])
def test_scale_out_of_range_is_rejected(scale: float) -> None:
    with pytest.raises(ValueError, match="scale must be in"):
        data.Augment(scale=scale)


def test_elastic_bends_strokes_by_at_most_its_pixels() -> None:
    bar = torch.zeros(64, 1, 28, 28)
    bar[:, :, 4:24, 13:15] = 1.0  # a vertical bar 64 times; its x-centre is 14 on every row
    out = data.Augment(elastic=2.0)(bar, torch.Generator().manual_seed(0))
    rows = out[:, 0, 6:22]  # the bar's middle rows, away from its ends
    xs = torch.arange(28.0)
    centre = (rows * xs).sum(-1) / rows.sum(-1).clamp_min(1e-6)  # [64, 16]: x-centre per row
    shift = centre - 14
    assert float(shift.abs().max()) <= 2.0 * 1.3 + 0.5  # bicubic may overshoot the grid a little
    assert float(shift.std(dim=1).mean()) > 0.1  # bent along the stroke, not moved rigidly
    assert float(shift.mean(dim=1).std()) > 0.1  # a different field for each image
    assert not data.Augment(elastic=2.0).is_identity and data.Augment(elastic=0).is_identity


@pytest.mark.parametrize("elastic", [-1.0, 9.0])
def test_elastic_out_of_range_is_rejected(elastic: float) -> None:
    with pytest.raises(ValueError, match="elastic"):
        data.Augment(elastic=elastic)


def test_elastic_has_no_torchvision_twin() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        data.torchvision_transform(data.Augment(elastic=1.0), 0.0, 1.0)


def test_unknown_augmentation_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="unknown augmentation 'rotate90'.*rotate5"):
        data.get_augment("rotate90")
    with pytest.raises(KeyError, match="known: none"):
        data.TensorLoader(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2), augment="nope")
    with pytest.raises(KeyError):
        data.torchvision_transform("nope", 0.0, 1.0)


@pytest.mark.parametrize("name", ["none", "rotate5", "crop-rotate15", "rotate10-shift2", "rotate10-shift2-scale10"])
def test_torchvision_transform_runs_per_image(name: str, data_root: Path) -> None:
    ds = data.load_mnist(False, data_root, transform=data.torchvision_transform(name, 0.1307, 0.3081))
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)


def test_augmented_loader_changes_only_the_images(data_root: Path) -> None:
    images, labels = data.mnist_tensors(False, data_root)
    plain = data.TensorLoader(images[:256], labels[:256], 64, shuffle=True, seed=3)
    aug = data.TensorLoader(images[:256], labels[:256], 64, shuffle=True, augment="rotate5", seed=3)
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(aug))
    assert torch.equal(y0, y1) and x0.shape == x1.shape and not torch.equal(x0, x1)



# --------------------------------------------------------------------------- lesson 01's figures


def test_lesson_figures() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistlib import plots

    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    fig = plots.class_balance({"train": torch.bincount(torch.arange(100) % 10), "test": [1] * 10})
    assert len(fig.axes[0].patches) == 20
    fig = plots.pixel_histogram(images, mean=0.5, std=0.3)
    assert fig.axes[0].get_yscale() == "log"
    rows = {"rotate5": data.get_augment("rotate5")(images[:4].unsqueeze(1).float() / 255)}
    fig = plots.augmentation_gallery(images[:4], rows)
    assert len(fig.axes) == 8 and fig.axes[4].get_ylabel() == "rotate5"
    with pytest.raises(ValueError, match="expected 4"):
        plots.augmentation_gallery(images[:4], {"short": images[:3]})
    with pytest.raises(ValueError):
        plots.class_balance({})
    plt.close("all")


def test_normalization_constants_come_from_the_training_split_only(data_root: Path) -> None:
    """Validation images are treated as new images would be: they do not shape the normalisation."""
    images, _ = data.mnist_tensors(True, data_root)
    train_idx, _ = data.split_indices(len(images), 5_000, seed=0)
    pixels = images[train_idx].double().div(255)
    mean, std = data.normalization_constants(data_root)
    assert mean == pytest.approx(pixels.mean().item(), abs=1e-9) and std == pytest.approx(pixels.std().item(), rel=1e-6)
    assert mean != pytest.approx(images.double().div(255).mean().item(), abs=1e-6)
