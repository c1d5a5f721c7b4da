"""Checkpoints: safe round trips, atomic writes, clear errors on bad files, newest-file lookup."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlib import checkpoints as ck
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
    real_save = torch.save

    def half_then_crash(obj: object, f: str | os.PathLike) -> None:
        real_save(obj, f)
        with open(f, "r+b") as fh:  # a half-written file…
            fh.truncate(os.path.getsize(f) // 2)
        raise KeyboardInterrupt  # …and the run dies

    monkeypatch.setattr(ck.torch, "save", half_then_crash)
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
