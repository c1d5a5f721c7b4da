"""Your own digits on disk: atomic saves, damaged manifests, added image files, the dataset."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlib._support import files as safefiles
from mnistlib.drawing import prepare_digit, preprocess
from mnistlib.handwriting.store import (
    HandwritingDataset,
    HandwritingStore,
    HandwritingWarning,
    label_from_name,
    split_by_session,
    stratified_split,
)
from mnistlib.handwriting.synthetic import SessionStyle, make_synthetic_digits, session_style, synthetic_strokes
from mnistlib.strokes import example_strokes, rasterize

MEAN, STD = 0.1307, 0.3081


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path) -> HandwritingStore:
    s = HandwritingStore(tmp_path / "my_digits")
    s.add_drawing(example_strokes("7"), 7)
    s.add_drawing(example_strokes("1"), 1)
    return s


# ------------------------------------------------------------------------ saving


def test_a_saved_drawing_is_a_png_strokes_and_a_label(store) -> None:
    manifest = [json.loads(line) for line in store.manifest.read_text().splitlines()]
    assert [m["label"] for m in manifest] == [7, 1]
    first = manifest[0]
    assert first["file"] == "pad/00001_7.png" and first["size"] == 280 and first["brush"] == 20.0
    assert first["strokes"] == [[list(p) for p in s] for s in example_strokes("7")]
    png = np.asarray(Image.open(store.folder / first["file"]))
    assert png.shape == (280, 280)  # canvas resolution
    np.testing.assert_array_equal(png, 255 - rasterize(example_strokes("7")))  # black ink on white


def test_samples_survive_a_restart(store) -> None:
    again = HandwritingStore(store.folder)  # a new kernel: only what is on disk
    assert [(s.label, s.path.name, s.source) for s in again.drawings()] == [
        (7, "00001_7.png", "pad"), (1, "00002_1.png", "pad")]
    assert again.counts() == [0, 1, 0, 0, 0, 0, 0, 1, 0, 0] and again.next_digit() == 0


def test_remove_last_and_numbering(store) -> None:
    removed = store.remove_last()
    assert removed.label == 1 and not removed.path.exists()
    assert [s.label for s in store.drawings()] == [7]
    again = store.add_drawing(example_strokes("1"), 1)
    assert again.path.name == "00002_1.png"
    assert HandwritingStore(store.folder / "nothing").remove_last() is None


def test_glitchy_points_are_not_saved(store) -> None:
    sample = store.add_drawing([[(1, 2), (float("nan"), 3), (4, float("inf")), (5, 6)]], 3)
    assert sample.strokes == [[[1.0, 2.0], [5.0, 6.0]]]
    assert "NaN" not in store.manifest.read_text() and store.drawings()[-1].strokes == sample.strokes


@pytest.mark.parametrize("label", [-1, 10, 3.0, "7", True])
def test_labels_are_digits(store, label) -> None:
    with pytest.raises(ValueError, match="label"):
        store.add_drawing(example_strokes("7"), label)


@pytest.mark.parametrize("failing_write", [1, 2])  # 1: the drawing's PNG, 2: the manifest
def test_a_full_disk_mid_save_loses_nothing(store, monkeypatch, failing_write: int) -> None:
    before = snapshot(store.folder)
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing_write * 2 - 1:  # each atomic write fsyncs the file, then the folder
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(safefiles.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        store.add_drawing(example_strokes("7-bar"), 7)
    monkeypatch.undo()
    after = snapshot(store.folder)
    assert {k: v for k, v in after.items() if k in before} == before  # earlier samples untouched
    assert not [k for k in after if Path(k).name.startswith(".")]  # no temporary file left behind
    assert [s.label for s in HandwritingStore(store.folder).drawings()] == [7, 1]


def test_a_failing_write_call_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "manifest.jsonl"
    safefiles.write_bytes(target, b"old\n")
    real = Path.write_bytes

    def half_then_full_disk(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full_disk)
    with pytest.raises(OSError):
        safefiles.write_bytes(target, b"new and much longer\n")
    monkeypatch.undo()
    assert target.read_bytes() == b"old\n" and [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]


def test_written_files_respect_the_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path = safefiles.write_bytes(tmp_path / "a.png", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's 0600


# ------------------------------------------------------------------------ drawing sessions


def test_each_store_object_is_one_session(store) -> None:
    later = HandwritingStore(store.folder)  # the next sitting: a new kernel, a new store
    later.add_drawing(example_strokes("7-bar"), 4)
    assert later.session != store.session
    lines = [json.loads(line) for line in store.manifest.read_text().splitlines()]
    assert [m["session"] for m in lines] == [store.session, store.session, later.session]
    assert [s.session for s in HandwritingStore(store.folder).drawings()] == [store.session] * 2 + [later.session]
    named = HandwritingStore(store.folder, session="monday")
    assert named.add_drawing(example_strokes("1"), 1).session == "monday"
    assert named.remove_last().session == "monday" and len(store.drawings()) == 3


def test_lines_written_before_sessions_are_still_read(store) -> None:
    old = [json.loads(line) for line in store.manifest.read_text().splitlines()]
    for entry in old:
        del entry["session"]
    old[0]["saved"] = "2024-03-01T10:00:00"
    del old[1]["saved"]
    store.manifest.write_text("".join(json.dumps(e) + "\n" for e in old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not damaged: nothing reported
        samples = store.drawings()
    assert [(s.label, s.session) for s in samples] == [(7, "day-2024-03-01"), (1, "unknown")]


def test_added_image_files_are_one_session(store) -> None:
    seven_on_paper().save(store.folder / "scan_7.png")
    assert [s.session for s in store.samples()] == [store.session, store.session, "files"]


def test_split_by_session_keeps_sessions_whole() -> None:
    sessions = ["a"] * 30 + ["b"] * 20 + ["c"] * 25 + ["d"] * 25
    tune, held = split_by_session(sessions, 0.3, seed=0)
    assert sorted(tune + held) == list(range(100)) and not set(tune) & set(held)
    assert not {sessions[i] for i in tune} & {sessions[i] for i in held}
    assert len(held) in (25, 30)  # the one session whose size is nearest 30 % of the digits
    assert split_by_session(sessions, 0.3, seed=0) == (tune, held)
    assert len({tuple(split_by_session(sessions, 0.3, seed=s)[1]) for s in range(10)}) > 1  # the seed chooses
    assert len(split_by_session(sessions, 0.5, seed=0)[1]) in (45, 50, 55)  # two sessions
    assert len(split_by_session(sessions, 0.01)[1]) > 0 and len(split_by_session(sessions, 0.99)[0]) > 0


def test_split_by_session_needs_two_sessions() -> None:
    with pytest.raises(ValueError, match="at least two"):
        split_by_session(["a"] * 10)
    with pytest.raises(ValueError, match="fraction"):
        split_by_session(["a", "b"], 0.0)


# ------------------------------------------------------------------------ damaged manifests


def test_damaged_manifest_lines_are_reported_and_skipped(store) -> None:
    good = store.manifest.read_text().splitlines()
    missing = json.dumps({"file": "pad/00099_5.png", "label": 5, "strokes": [[[1, 2]]]})
    bad_label = good[0].replace('"label": 7', '"label": 12')
    outside = good[0].replace('"pad/00001_7.png"', '"../../etc/passwd"')
    lines = [good[0], "{not json", "", bad_label, missing, outside, "[1, 2]", good[1], good[1][:40]]
    store.manifest.write_text("\n".join(lines) + "\n")
    with pytest.warns(HandwritingWarning) as caught:
        samples = store.drawings()
    assert [s.label for s in samples] == [7, 1]
    text = [str(w.message) for w in caught]
    for number, words in [(2, "damaged"), (4, "label 12"), (5, "missing"), (6, "not a PNG"), (7, "JSON object"),
                          (9, "damaged")]:
        assert any(t.startswith(f"manifest.jsonl line {number} ") and words in t for t in text), (number, text)
    assert not any(t.startswith(("manifest.jsonl line 1 ", "manifest.jsonl line 8 ")) for t in text)


def test_a_torn_last_line_does_not_swallow_the_next_sample(store) -> None:
    text = store.manifest.read_text()
    store.manifest.write_text(text + text.splitlines()[0][:30])  # a crash mid-line, no newline
    store.add_drawing(example_strokes("7-bar"), 4)
    with pytest.warns(HandwritingWarning, match="line 3"):
        assert [s.label for s in store.drawings()] == [7, 1, 4]


def test_remove_last_keeps_damaged_lines(store) -> None:
    with open(store.manifest, "a") as fh:
        fh.write("garbage\n")
    with pytest.warns(HandwritingWarning):
        assert store.remove_last().label == 1
    assert store.manifest.read_text().splitlines()[-1] == "garbage"


# ------------------------------------------------------------------------ image files


def seven_on_paper(size: int = 200) -> Image.Image:
    return Image.fromarray(255 - rasterize(example_strokes("7", size), size, brush=size / 14))


@pytest.mark.parametrize(
    "name, label",
    [("7.png", 7), ("7_mine.jpg", 7), ("scan-3.png", 3), ("3/photo.jpg", 3), ("3/4.png", 3), ("a/b/5/x.png", 5),
     ("img_2024_7.png", 7), ("digit7.png", None), ("1_and_2.png", None), ("photo.png", None), ("12.png", None)],
)
def test_labels_from_names(name: str, label: int | None) -> None:
    assert label_from_name(name) == label


def test_added_image_files_join_and_others_are_reported(store) -> None:
    (store.folder / "3").mkdir()
    seven_on_paper().save(store.folder / "3" / "photo.jpg")  # the folder says 3, whatever it looks like
    seven_on_paper().save(store.folder / "scan_7.png")
    seven_on_paper().save(store.folder / "unlabelled.png")
    (store.folder / "notes.txt").write_text("my digits")
    (store.folder / "fake_7.png").write_text("not a png")
    (store.folder / ".hidden_7.png.tmp").write_bytes(b"half")
    with pytest.warns(HandwritingWarning) as caught:
        samples = store.samples()
    assert [(s.label, s.source, s.path.name) for s in samples] == [
        (7, "pad", "00001_7.png"), (1, "pad", "00002_1.png"), (3, "file", "photo.jpg"), (7, "file", "scan_7.png")]
    text = " | ".join(str(w.message) for w in caught)
    assert "notes.txt is not an image" in text and "fake_7.png is not an image" in text
    assert "unlabelled.png has no label" in text and "hidden" not in text


# ------------------------------------------------------------------------ the dataset


def test_dataset_items_equal_the_preprocessing(store) -> None:
    seven_on_paper(600).convert("RGB").save(store.folder / "7_photo.jpg", quality=90)
    ds = HandwritingDataset(store.folder, mean=MEAN, std=STD)
    assert len(ds) == 3 and ds.targets.tolist() == [7, 1, 7]
    for i, sample in enumerate(ds.samples):
        x, y = ds[i]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int) and y == sample.label
        torch.testing.assert_close(x, preprocess(sample.path, MEAN, STD)[0], rtol=0, atol=0)
    # a pad sample's file gives what the pad itself saw from the strokes
    np.testing.assert_allclose(ds.images[0], prepare_digit(rasterize(example_strokes("7"))), atol=1e-6)


def test_dataset_works_with_mnist_transforms_and_loaders(store) -> None:
    from torch.utils.data import DataLoader

    from mnistlib.data import torchvision_transform

    ds = HandwritingDataset(store, transform=torchvision_transform("none", MEAN, STD), target_transform=str)
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and y == "7"
    plain = HandwritingDataset(store, mean=MEAN, std=STD)
    assert (x - plain[0][0]).abs().max() < 0.5 / 255 / STD + 1e-6  # only 8-bit rounding differs
    xb, yb = next(iter(DataLoader(plain, batch_size=2)))
    assert xb.shape == (2, 1, 28, 28) and yb.tolist() == [7, 1]
    assert plain.uint8_images().dtype == torch.uint8 and plain.uint8_images().shape == (2, 28, 28)


def test_dataset_skips_unreadable_images_by_name(store) -> None:
    Image.new("L", (50, 50), 255).save(store.folder / "blank_4.png")
    with pytest.warns(HandwritingWarning, match="blank_4.png"):
        ds = HandwritingDataset(store, mean=MEAN, std=STD)
    assert len(ds) == 2 and ds.skipped[0][0].name == "blank_4.png" and "blank" in ds.skipped[0][1]


def test_dataset_needs_a_normalisation(store) -> None:
    with pytest.raises(ValueError, match="mean= and std="):
        HandwritingDataset(store)


def test_an_empty_folder_is_an_empty_dataset(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = HandwritingDataset(tmp_path / "none", mean=MEAN, std=STD)
    assert len(ds) == 0 and ds.images.shape == (0, 28, 28)


# ------------------------------------------------------------------------ split


def test_stratified_split() -> None:
    labels = [d for d in range(10) for _ in range(d + 2)]  # 2 … 11 of each digit
    tune, held = stratified_split(labels, 0.3, seed=1)
    assert sorted(tune + held) == list(range(len(labels))) and not set(tune) & set(held)
    for d in range(10):
        n = labels.count(d)
        k = sum(labels[i] == d for i in held)
        assert 1 <= k <= n - 1 and abs(k - 0.3 * n) <= 1
    assert stratified_split(labels, 0.3, seed=1) == (tune, held)
    assert stratified_split(labels, 0.3, seed=2) != (tune, held)
    assert stratified_split([5], 0.3) == ([0], [])
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0)


# ------------------------------------------------------------------------ synthetic handwriting


def test_synthetic_digits_are_seeded_and_stored_like_drawings(tmp_path) -> None:
    a = make_synthetic_digits(HandwritingStore(tmp_path / "a"), per_digit=2, seed=3)
    b = make_synthetic_digits(HandwritingStore(tmp_path / "b"), per_digit=2, seed=3)
    c = make_synthetic_digits(HandwritingStore(tmp_path / "c"), per_digit=2, seed=4)
    assert [s.strokes for s in a] == [s.strokes for s in b] and [s.strokes for s in a] != [s.strokes for s in c]
    assert [s.label for s in a] == list(range(10)) * 2
    assert HandwritingStore(tmp_path / "a").counts() == [2] * 10
    for s in a:
        img = prepare_digit(s.path)  # each one is a readable digit
        assert img.shape == (28, 28) and img.max() == pytest.approx(1.0)


@pytest.mark.parametrize("styled", [False, True])
def test_synthetic_strokes_stay_on_the_canvas(styled: bool) -> None:
    rng, styles = np.random.default_rng(0), np.random.default_rng(1)
    for digit in range(10):
        for _ in range(20):
            style = session_style(styles) if styled else SessionStyle()
            strokes, brush = synthetic_strokes(digit, rng, 280, style)
            pts = np.concatenate([np.asarray(s) for s in strokes])
            assert pts.min() >= brush / 2 - 1e-6 and pts.max() <= 280 - brush / 2 + 1e-6


# ------------------------------------------------------------------------ a damaged folder, two writers at once


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels (a few bytes: no pixel data is ever read)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 40_000])  # over the 120-megapixel limit; over Pillow's bomb limit too
def test_an_oversized_image_is_reported_and_skipped(store, side: int) -> None:
    (store.folder / f"huge_{side}_7.png").write_bytes(huge_png_header(side, side))
    with pytest.warns(HandwritingWarning, match=f"huge_{side}_7.png.*too large"):
        assert store.counts() == [0, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    with pytest.warns(HandwritingWarning, match="too large"):
        assert [s.label for s in store.samples()] == [7, 1]
    with pytest.warns(HandwritingWarning, match="too large"):
        assert len(HandwritingDataset(store, mean=MEAN, std=STD)) == 2


def test_a_duplicated_line_counts_once_and_undo_keeps_what_an_earlier_line_uses(store) -> None:
    lines = store.manifest.read_text().splitlines()
    store.manifest.write_text("\n".join([*lines, lines[0]]) + "\n")  # the 7's line again, at the end
    with pytest.warns(HandwritingWarning, match="line 3 repeats line 1"):
        assert [s.label for s in store.drawings()] == [7, 1] and store.counts()[7] == 1
    with pytest.warns(HandwritingWarning):
        removed = store.remove_last()  # the newest drawing is the 1
    assert removed.label == 1 and not removed.path.exists()
    with pytest.warns(HandwritingWarning, match="repeats"):
        (seven,) = store.drawings()
    assert seven.label == 7 and seven.path.exists()  # its PNG is still there for the line that uses it
    with pytest.warns(HandwritingWarning):
        assert store.remove_last().label == 7
    assert store.drawings() == [] and not seven.path.exists() and store.manifest.read_text() == ""


@pytest.mark.parametrize("strokes", ["missing", "not a list", [[["x", 1]]]])
def test_a_line_without_usable_strokes_keeps_its_digit(store, strokes) -> None:
    lines = store.manifest.read_text().splitlines()
    entry = json.loads(lines[0])
    if strokes == "missing":
        del entry["strokes"]
    else:
        entry["strokes"] = strokes
    store.manifest.write_text("\n".join([json.dumps(entry), lines[1]]) + "\n")
    with pytest.warns(HandwritingWarning, match="line 1 .*strokes"):
        samples = store.drawings()
    assert [(s.label, s.path.name) for s in samples] == [(7, "00001_7.png"), (1, "00002_1.png")]
    assert samples[0].strokes is None and samples[1].strokes is not None


def test_an_unreadable_manifest_is_reported_not_fatal(store) -> None:
    store.manifest.unlink()
    store.manifest.mkdir()  # what a broken sync tool can leave
    with pytest.warns(HandwritingWarning, match="manifest.jsonl"):
        assert store.drawings() == []


#: One writer of the two-writer test: waits for the go file, then saves ``n`` drawings of digit ``d``.
WRITER = r"""
import os, sys, time
from pathlib import Path
from mnistlib.handwriting.store import HandwritingStore
from mnistlib.strokes import example_strokes
folder, go, digit, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = HandwritingStore(folder)
Path(sys.argv[5]).touch()  # ready
while not go.exists():
    time.sleep(0.005)
for _ in range(n):
    store.add_drawing(example_strokes("7"), digit)
"""


def test_two_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    from waiting import HANG_S

    folder, go, n = tmp_path / "my_digits", tmp_path / "GO", 25
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get(
        "PYTHONPATH", "")])}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(go), str(d), str(n),
                                 str(tmp_path / f"ready{d}")], env=env) for d in (3, 8)]
    while not all((tmp_path / f"ready{d}").exists() for d in (3, 8)):
        assert all(w.poll() is None for w in writers)
        time.sleep(0.01)
    go.touch()  # both start saving at the same moment
    assert [w.wait(HANG_S) for w in writers] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one damaged line
        samples = HandwritingStore(folder).drawings()
    assert sorted(s.label for s in samples) == [3] * n + [8] * n
    listed = {s.path.name for s in samples}
    assert len(listed) == 2 * n and listed == {p.name for p in (folder / "pad").iterdir()}  # no PNG unlisted
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # the lock is gone too


def test_temporaries_of_a_killed_save_are_removed_by_the_next_save(store) -> None:
    """A save killed (SIGKILL) mid-write leaves a hidden temporary; the next save removes it."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = safefiles.owner_tag().split("-")[1]
    left = [store.folder / f".manifest.jsonl.{dead.pid}-{host}.abc123.part",
            store.folder / "pad" / f".00003_4.png.{dead.pid}-{host}.abc123.part"]
    for path in left:
        path.write_bytes(b"half")
    store.add_drawing(example_strokes("1"), 1)
    assert not any(path.exists() for path in left)
    assert sorted(p.name for p in (store.folder / "pad").iterdir()) == ["00001_7.png", "00002_1.png", "00003_1.png"]


def test_synthetic_sessions(tmp_path) -> None:
    store = HandwritingStore(tmp_path / "s")
    samples = make_synthetic_digits(store, per_digit=10, seed=0, sessions=4)
    sessions = [s.session for s in samples]
    assert sorted(set(sessions)) == [f"made-up-{k}" for k in range(1, 5)]
    assert [sessions.count(f"made-up-{k}") for k in range(1, 5)] == [30, 30, 20, 20]  # 10 rounds over 4 sittings
    for k in range(1, 5):  # every sitting draws every digit
        assert sorted({s.label for s in samples if s.session == f"made-up-{k}"}) == list(range(10))
    assert [s.session for s in HandwritingStore(store.folder).drawings()] == sessions  # written to the manifest
    brushes = [json.loads(line)["brush"] for line in store.manifest.read_text().splitlines()]
    rng = np.random.default_rng(0)  # the same jitter in the writer's usual style
    usual = [synthetic_strokes(d, rng, 280)[1] for _ in range(10) for d in range(10)]
    assert brushes[:30] == pytest.approx(usual[:30])  # the first sitting is the usual hand …
    for k in (2, 3, 4):  # … every later one has its own pen width
        ratios = {round(b / u, 6) for b, u, s in zip(brushes, usual, sessions, strict=True) if s == f"made-up-{k}"}
        assert len(ratios) == 1 and ratios != {1.0}
    with pytest.raises(ValueError, match="sessions"):
        make_synthetic_digits(HandwritingStore(tmp_path / "t"), per_digit=2, sessions=3)


def test_one_synthetic_session_draws_what_it_always_drew(tmp_path) -> None:
    store = HandwritingStore(tmp_path / "one")
    samples = make_synthetic_digits(store, per_digit=2, seed=3)
    rng = np.random.default_rng(3)
    expected = [synthetic_strokes(d, rng, 280) for _ in range(2) for d in range(10)]
    for sample, (strokes, _) in zip(samples, expected, strict=True):
        assert sample.strokes == [[[round(x, 1), round(y, 1)] for x, y in s] for s in strokes]
    assert {s.session for s in samples} == {store.session}
