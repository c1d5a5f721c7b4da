"""Checkpoints: safe round trips, atomic writes with the umask's mode, clear one-line errors on bad
files and fields, newest-file lookup, and cleaning what killed runs left behind."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlib import checkpoints as ck
from mnistlib._support import files as safefiles
from mnistlib.checkpoints import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    new_run_stamp,
    release_stamp,
    save_checkpoint,
)
from mnistlib.models import get_model

HISTORY = {"epoch": [1, 2], "train_loss": [0.5, np.float64(0.25)], "train_acc": [0.8, 0.9],
           "val_loss": [0.3, 0.2], "val_acc": [np.float32(0.91), 0.95], "lr": [1e-3, 1e-3], "seconds": [1.0, 1.1]}


def _save(path: Path, model: torch.nn.Module | None = None, **kw: object) -> Path:
    model = model if model is not None else get_model("batchnorm", hidden=32)
    args = {"hparams": {"lr": 1e-3, "optimizer": "adam", "path": Path("x")}, "history": HISTORY,
            "mean": 0.1307, "std": 0.3081} | kw
    return save_checkpoint(path, model, **args)


def test_round_trip_rebuilds_the_named_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("batchnorm", hidden=32)
    path = _save(tmp_path / "best_model_20240101_120000.pth", model,
                 optimizer_state=torch.optim.Adam(model.parameters()).state_dict())
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.name == "batchnorm" and ckpt.options == {"hidden": 32}
    assert not ckpt.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt.model.state_dict()[key])
    assert ckpt.mean == pytest.approx(0.1307) and ckpt.std == pytest.approx(0.3081)
    assert ckpt.history["val_acc"] == pytest.approx([0.91, 0.95])
    assert type(ckpt.history["train_loss"][1]) is float  # numpy scalars stored as plain numbers
    assert ckpt.hparams["path"] == "x"
    assert ckpt.epoch == 2 and ckpt.best_val_acc == pytest.approx(0.95)
    assert ckpt.optimizer_state is not None and ckpt.path == path
    # the file really is weights-only loadable
    assert torch.load(path, weights_only=True)["format"] == ck.FORMAT


def test_model_without_registry_name_needs_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name="):
        save_checkpoint(tmp_path / "m.pth", torch.nn.Linear(2, 2), mean=0.0, std=1.0)


def test_interrupted_write_leaves_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "best_model_20240101_120000.pth")
    before = path.read_bytes()
    real_write = Path.write_bytes

    def half_then_crash(self: Path, data: bytes) -> int:
        real_write(self, bytes(data)[: len(data) // 2])  # a half-written file…
        raise KeyboardInterrupt  # …and the run dies

    monkeypatch.setattr(Path, "write_bytes", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _save(path, get_model("batchnorm", hidden=16))
    assert path.read_bytes() == before
    assert load_checkpoint(path).options == {"hidden": 32}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, good: p.write_bytes(b"not a checkpoint at all\n" * 5), "not a PyTorch checkpoint"),
        (lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "truncated or corrupt"),
        (lambda p, good: p.write_bytes(b""), "not a PyTorch checkpoint"),
        (lambda p, good: torch.save(get_model("batchnorm").state_dict(), p), "bare state dict"),
        (lambda p, good: torch.save([1, 2, 3], p), "not an mnistlib checkpoint"),
        (lambda p, good: _save(p, get_model("batchnorm", hidden=32), options={"hidden": 64}), "do not fit"),
        (lambda p, good: _save(p, get_model("batchnorm", hidden=32), name="classic", options={}), "do not fit"),
        (lambda p, good: _save(p, name="no-such-model", options={}), "cannot rebuild model"),
        (lambda p, good: None, "no such file"),
    ],
    ids=["garbage", "truncated", "empty", "state-dict", "list", "wrong-options", "wrong-model", "unknown", "missing"],
)
def test_bad_files_give_a_clear_error(tmp_path: Path, make, message: str) -> None:
    good = _save(tmp_path / "good.pth")
    bad = tmp_path / "bad.pth"
    make(bad, good)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


_RAN: list[str] = []


def _side_effect(text: str) -> str:
    _RAN.append(text)
    return text


class _Evil:
    def __reduce__(self) -> tuple:
        return (_side_effect, ("code ran",))


def test_a_checkpoint_is_never_unpickled_as_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"format": ck.FORMAT, "name": "batchnorm", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="safe"):
        load_checkpoint(path)
    assert _RAN == []


def test_latest_checkpoint_by_stamp_and_suffix(tmp_path: Path) -> None:
    assert latest_checkpoint(folder=tmp_path) is None
    assert latest_checkpoint(folder=tmp_path / "absent") is None
    names = ["best_model_20240101_120000.pth", "best_model_20240102_090000.pth",
             "best_model_20240102_090000_2.pth", "best_model_20240102_090000_10.pth",
             "final_model_20250101_000000.pth", "best_model_notastamp.pth"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert latest_checkpoint("best", tmp_path).name == "best_model_20240102_090000_10.pth"
    assert latest_checkpoint("final", tmp_path).name == "final_model_20250101_000000.pth"
    assert latest_checkpoint(None, tmp_path).name == "final_model_20250101_000000.pth"
    assert [p.name for p in list_checkpoints("best", tmp_path)][:2] == names[:2]


def test_latest_checkpoint_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path))
    _save(tmp_path / "best_model_20240101_120000.pth")
    assert latest_checkpoint() == tmp_path / "best_model_20240101_120000.pth"


def test_two_runs_in_the_same_second_get_different_stamps(tmp_path: Path) -> None:
    first, second = new_run_stamp(tmp_path), new_run_stamp(tmp_path)
    assert first != second and second.startswith(first[:15])
    (tmp_path / f"best_model_{first}.pth").write_bytes(b"x")
    release_stamp(first, tmp_path)
    release_stamp(second, tmp_path)
    assert new_run_stamp(tmp_path) not in (first,)
    assert ck._NAME_RE.match(f"best_model_{second}.pth")


# --------------------------------------------------------------------------- bad fields, unreadable files


def _craft(tmp_path: Path, **changes: object) -> Path:
    """A checkpoint saved properly, then rewritten with some fields changed (None: removed)."""
    good = _save(tmp_path / "good.pth")
    payload = torch.load(good, weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    bad = tmp_path / "crafted.pth"
    torch.save(payload, bad)
    return bad


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mean": "0.1307"}, "field 'mean' is str"),
        ({"std": True}, "field 'std' is bool"),
        ({"options": [1, 2]}, "field 'options' is list"),
        ({"options": {1: 2}}, "keys that are not names"),
        ({"epoch": {"n": 1}}, "field 'epoch' is dict"),
        ({"history": [0.5, 0.9]}, "field 'history' is list"),
        ({"history": {"val_acc": "high"}}, "history field 'val_acc'"),
        ({"history": {"val_acc": [0.9, "x"]}}, "history field 'val_acc'"),
        ({"name": 7}, "field 'name' is int"),
        ({"hparams": "lr=1"}, "field 'hparams' is str"),
        ({"state_dict": [1, 2]}, "field 'state_dict' is list"),
        ({"state_dict": {"features.0.weight": 3}}, "not a plain tensor"),
        ({"created": 20240101}, "field 'created' is int"),
        ({"extra": 5}, "field 'extra' is int"),
        ({"optimizer_state": "adam"}, "field 'optimizer_state' is str"),
        ({"version": "1"}, "field 'version' is str"),
        ({"mean": None}, "lacks mean"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else None,
)
def test_fields_of_the_wrong_type_give_one_line(tmp_path: Path, changes: dict, message: str) -> None:
    bad = _craft(tmp_path, **changes)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert message in str(info.value) and str(bad) in str(info.value) and "\n" not in str(info.value)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="newer mnistlib"):
        load_checkpoint(_craft(tmp_path, version=ck.VERSION + 1))


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    """A checkpoint with mode 000 in a folder anyone may enter; as root (who may read anything) the
    test process takes the identity of ``nobody`` while it runs."""
    folder = Path(tempfile.mkdtemp(prefix="mnistlib-unreadable-"))
    try:
        folder.chmod(0o755)
        path = _save(folder / "best_model_20240101_120000.pth")
        path.chmod(0o000)
        if os.geteuid() != 0:
            yield path
            return
        os.seteuid(65534)
        try:
            yield path
        finally:
            os.seteuid(0)
    finally:
        shutil.rmtree(folder)


def test_a_checkpoint_the_user_cannot_read_gives_one_line(unreadable: Path) -> None:
    with pytest.raises(OSError):
        unreadable.open("rb")  # the file really is unreadable for this process
    with pytest.raises(CheckpointError, match="cannot be read \\(Permission denied\\)") as info:
        load_checkpoint(unreadable)
    assert str(unreadable) in str(info.value) and "\n" not in str(info.value)


def test_the_file_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error path that reopens the file could fail again outside its handler: loading opens it once."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    opened: list[str] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(bad):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)
    assert opened == [str(bad)]


def test_a_folder_or_fifo_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a file"):  # and does not block waiting for a writer
        load_checkpoint(fifo)


# --------------------------------------------------------------------------- best accuracy, umask, stale files


def test_best_val_acc_skips_epochs_without_validation(tmp_path: Path) -> None:
    history = HISTORY | {"val_acc": [math.nan, 0.93, math.nan, 0.91]}
    ckpt = load_checkpoint(_save(tmp_path / "best_model_20240101_120000.pth", history=history))
    assert ckpt.best_val_acc == pytest.approx(0.93)
    assert "93.00%" in repr(ckpt)
    none = load_checkpoint(_save(tmp_path / "b.pth", history=HISTORY | {"val_acc": [math.nan]}))
    assert none.best_val_acc is None


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test, and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_checkpoints_and_locks_respect_the_umask(tmp_path: Path, umask: Callable[[int], None],
                                                 mask: int, mode: int) -> None:
    umask(mask)
    path = _save(tmp_path / "best_model_20240101_120000.pth")
    assert path.stat().st_mode & 0o777 == mode
    stamp = new_run_stamp(tmp_path)
    assert (tmp_path / f".run_{stamp}.lock").stat().st_mode & 0o777 == mode


def _dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_run_lock_records_the_process(tmp_path: Path) -> None:
    stamp = new_run_stamp(tmp_path)
    pid, host = (tmp_path / f".run_{stamp}.lock").read_text().split()
    assert int(pid) == os.getpid() and host == safefiles.owner_tag().split("-")[1]
    assert ck.clean_stale(tmp_path) == []  # our own run is alive
    release_stamp(stamp, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_clean_stale_removes_only_what_dead_runs_left(tmp_path: Path) -> None:
    host, dead, alive = safefiles.owner_tag().split("-")[1], _dead_pid(), os.getpid()
    day_ago = time.time() - safefiles.MAX_AGE - 60
    files = {  # name → (content, old?, stale?)
        f".best_model_20240101_120000.pth.{dead}-{host}.a1b2c3.part": (b"half", False, True),
        f".best_model_20240101_120000.pth.{alive}-{host}.d4e5f6.part": (b"live", False, False),
        ".final_model_20240101_120000.pth.123-0badc0de.x1y2z3.part": (b"other host", False, False),
        ".final_model_20240102_120000.pth.123-0badc0de.x1y2z3.part": (b"other host", True, True),
        ".best_model_20240101_120000.pth.k3j4h5g6.part": (b"older mnistlib", False, False),
        ".best_model_20240102_120000.pth.k3j4h5g6.part": (b"older mnistlib", True, True),
        ".run_20240101_120000.lock": (f"{dead} {host}\n".encode(), False, True),
        ".run_20240101_120000_2.lock": (f"{alive} {host}\n".encode(), True, False),
        ".run_20240101_120001.lock": (b"", False, False),
        ".run_20240101_120002.lock": (b"", True, True),
        ".notes.txt.k3j4h5g6.part": (b"not a checkpoint's", True, False),
        ".draft.part": (b"the user's", True, False),
        "best_model_20240101_120000.pth": (b"a checkpoint", True, False),
    }
    for name, (content, old, _) in files.items():
        (tmp_path / name).write_bytes(content)
        if old:
            os.utime(tmp_path / name, (day_ago, day_ago))
    removed = ck.clean_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, (_, _, stale) in files.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, (_, _, s) in files.items() if not s)
    assert ck.clean_stale(tmp_path / "absent") == []


def test_an_interrupted_save_leaves_a_temporary_that_clean_stale_knows(tmp_path: Path) -> None:
    """What a run killed in the middle of a save leaves: its temporary names its (dead) process."""
    name = f".best_model_20240101_120000.pth.{safefiles.owner_tag()}.abc123.part"
    (tmp_path / name).write_bytes(b"half")
    assert safefiles.is_stale(tmp_path / name) is False  # we are alive
    dead = name.replace(f".{os.getpid()}-", f".{_dead_pid()}-")
    (tmp_path / name).rename(tmp_path / dead)
    assert safefiles.is_stale(tmp_path / dead) is True
    assert [p.name for p in ck.clean_stale(tmp_path)] == [dead]
