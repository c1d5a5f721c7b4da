"""ONNX export (lesson 09): parity on every registry model, dynamic batch, int8, one-line errors."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from small_models import MEAN, STD, save_small, train_small
from torch import nn
from waiting import HANG_S

from mnistlib import export as ex
from mnistlib._support import files as safefiles
from mnistlib.apps.export_command import add_export_command
from mnistlib.checkpoints import Checkpoint, load_checkpoint
from mnistlib.data import split_indices
from mnistlib.drawing import classify, prepare_digit
from mnistlib.models import get_model, list_models
from mnistlib.strokes import example_strokes, rasterize

ort = pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _needs_mnist(data_root, monkeypatch) -> None:
    """Parity and accuracy read the MNIST test set: point mnistlib at the data root the tests found."""
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text.strip() and "Traceback" not in text


def untrained(tmp_path: Path, name: str) -> Path:
    torch.manual_seed(0)
    return save_small(tmp_path / f"best_model_{name}.pth", get_model(name))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, data_root) -> Path:
    """A batchnorm net trained for a second on 3,000 training images (about 89 % test accuracy)."""
    import os

    os.environ.setdefault("MNISTLIB_DATA", str(data_root))
    return save_small(tmp_path_factory.mktemp("small") / "best_model_small.pth", train_small("batchnorm", 3_000))


@pytest.fixture(scope="module")
def small_onnx(small_checkpoint: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "small.onnx"
    ex.export_onnx(small_checkpoint, out)
    return out


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mnistlib")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------ export and parity


@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_exports_with_parity(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out" / f"{name}.onnx"
    report = ex.export_onnx(untrained(tmp_path, name), out)
    assert report.ok and report.n_images == ex.PARITY_IMAGES == report.same_predictions
    assert report.max_abs_diff < 1e-4, report
    assert report.path == out and out.is_file() and report.file_bytes == out.stat().st_size
    assert report.batch_sizes == (1, 37, ex.PARITY_IMAGES - 38)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # one file: no .data, no temporary left
    meta = ex.read_metadata(out)
    assert meta["model"] == name and float(meta["mean"]) == MEAN and float(meta["std"]) == STD
    assert "disagree" not in str(report) and f"{ex.PARITY_IMAGES:,}" in str(report)


def test_batch_dimension_is_dynamic(small_onnx: Path) -> None:
    session = ort.InferenceSession(str(small_onnx), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == ex.INPUT_NAME and isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 28, 28]
    for n in (1, 37):
        x = np.random.default_rng(n).normal(size=(n, 1, 28, 28)).astype(np.float32)
        assert session.run(None, {ex.INPUT_NAME: x})[0].shape == (n, 10)


def test_export_leaves_the_learners_model_in_training_mode_as_it_was(small_checkpoint: Path, tmp_path) -> None:
    ckpt = load_checkpoint(small_checkpoint)
    ckpt.model.train()
    ex.export_onnx(ckpt, tmp_path / "m.onnx")  # exported in eval mode (BatchNorm folded, Dropout off) …
    assert ckpt.model.training  # … and the model the learner holds keeps its own mode


def test_the_exported_file_reads_a_drawn_digit_like_pytorch(small_checkpoint: Path, small_onnx: Path) -> None:
    ckpt = load_checkpoint(small_checkpoint)
    module, meta = ex.load_onnx(small_onnx)
    for digit in ("1", "7"):
        image28 = prepare_digit(rasterize(example_strokes(digit)))
        want = classify(image28, ckpt.model, ckpt.mean, ckpt.std)
        got = classify(image28, module, float(meta["mean"]), float(meta["std"]))
        assert got.digit == want.digit == int(digit)
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)


# ------------------------------------------------------------------------ int8


def test_int8_is_smaller_and_about_as_accurate(small_onnx: Path, tmp_path: Path) -> None:
    report = ex.quantize_int8(small_onnx, tmp_path / "small_int8.onnx", n_calibration=300, n_test=2_000)
    assert report.path.is_file() and report.int8_bytes == report.path.stat().st_size
    assert report.int8_bytes < 0.5 * report.fp32_bytes, report
    assert report.fp32_accuracy > 0.8 and abs(report.int8_accuracy - report.fp32_accuracy) < 0.01, report
    assert report.agreement > 0.97 and report.n_test == 2_000 and report.n_calibration == 300
    ops = {n.op_type for n in __import__("onnx").load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not ConvInteger
    assert float(ex.read_metadata(report.path)["mean"]) == MEAN  # the runtime still knows how to normalise


def test_calibration_reads_only_the_training_split(monkeypatch) -> None:
    import mnistlib.data as data

    real = data.mnist_tensors

    def training_set_only(train: bool = True, root=None):
        assert train, "calibration opened the test set"
        return real(train=True, root=root)

    monkeypatch.setattr(data, "mnist_tensors", training_set_only)
    reader = ex.TrainingImagesReader(500, MEAN, STD, seed=3)
    train_idx, val_idx = split_indices()
    assert reader.source == "train" and len(reader.indices) == 500
    assert set(reader.indices.tolist()) <= set(train_idx.tolist())
    assert not set(reader.indices.tolist()) & set(val_idx.tolist())
    batches = list(iter(reader.get_next, None))
    assert sum(len(b[ex.INPUT_NAME]) for b in batches) == 500
    reader.rewind()
    assert reader.get_next() is not None


# ------------------------------------------------------------------------ errors


def test_bad_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "best_model_bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ex.ExportError) as info:
        ex.export_onnx(bad, tmp_path / "m.onnx")
    assert one_line(str(info.value)) and bad.name in str(info.value)
    assert cli(["export", str(bad), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and one_line(err) and not (tmp_path / "m.onnx").exists()
    assert cli(["export", str(tmp_path / "missing.pth"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unwritable_path_is_one_line(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a file where a folder should be: fails for root too
    for target in (blocker / "m.onnx", tmp_path):
        with pytest.raises(ex.ExportError, match="cannot write") as info:
            ex.export_onnx(small_checkpoint, target)
        assert one_line(str(info.value))
    assert cli(["export", str(small_checkpoint), "--onnx", str(blocker / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and one_line(err)


class Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # a branch on the data: no single graph to export
            return x.flatten(1)[:, :10]
        return -x.flatten(1)[:, :10]


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) + 10 * torch.rand(x.shape[0], 10)  # random: no two runs agree


def fake_checkpoint(model: nn.Module) -> Checkpoint:
    return Checkpoint(model=model.eval(), name=type(model).__name__.lower(), options={}, hparams={}, history={},
                      mean=MEAN, std=STD)


def test_model_that_does_not_export_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="does not export") as info:
        ex.export_onnx(fake_checkpoint(Unexportable()), tmp_path / "m.onnx")
    assert one_line(str(info.value))
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="disagrees with PyTorch") as info:
        ex.export_onnx(fake_checkpoint(Noisy()), tmp_path / "m.onnx")
    assert one_line(str(info.value)) and list(tmp_path.iterdir()) == []


def test_not_an_onnx_file_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ex.ExportError) as info:
        ex.load_onnx(junk)
    assert one_line(str(info.value)) and "junk.onnx" in str(info.value)


# ------------------------------------------------------------------------ command line


def test_cli_writes_both_files_and_prints_the_figures(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m_int8.onnx"
    assert cli(["export", str(small_checkpoint), "--onnx", str(fp32), "--int8", str(int8),
                "--calibration-images", "200"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "largest logit difference" in out[0] and "test accuracy" in out[1]
    assert fp32.is_file() and int8.is_file() and int8.stat().st_size < fp32.stat().st_size


def test_cli_int8_alone_still_checks_parity(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    int8 = tmp_path / "only_int8.onnx"
    assert cli(["export", str(small_checkpoint), "--int8", str(int8), "--calibration-images", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "not kept" in out[0] and "largest logit difference" in out[0] and "test accuracy" in out[1]
    assert [p.name for p in tmp_path.iterdir()] == [int8.name]


def test_cli_needs_an_output(small_checkpoint: Path, capsys) -> None:
    assert cli(["export", str(small_checkpoint)]) == 2
    assert capsys.readouterr().err.startswith("error: export needs --onnx")


# ------------------------------------------------------------------------ README against results.json



@pytest.mark.skipif(shutil.which("npm") is None, reason="the page's runtime is installed with npm")
def test_python_m_mnistlib_export_web_writes_the_page(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """``python -m mnistlib export CKPT --web DIR``: the page, its model and the runtime, nothing from elsewhere."""
    from mnistlib.apps.cli import main

    site = tmp_path / "site"
    assert main(["export", str(small_checkpoint), "--web", str(site)]) == 0
    assert "http.server" in capsys.readouterr().out
    assert {"index.html", "model.onnx", "config.json", "preprocess.js"} <= {p.name for p in site.iterdir()}
    assert any(p.suffix == ".wasm" for p in site.iterdir())
    config = json.loads((site / "config.json").read_text())
    assert config["mean"] == pytest.approx(load_checkpoint(small_checkpoint).mean)


# ------------------------------------------------------------------------ faults: full disks, odd targets, kills


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _scratch(folder: Path) -> list[str]:
    """mnistlib's scratch folders in a temporary folder (other programs may keep files there too)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".mnistlib-"))


needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="the page's runtime is installed with npm")


@pytest.mark.parametrize("flag", ["--onnx", "--int8"])
def test_a_full_disk_is_one_line_and_leaves_nothing(flag: str, small_checkpoint: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(safefiles.os, "fsync", _enospc)  # every write fails as on a full disk
    assert cli(["export", str(small_checkpoint), flag, str(tmp_path / "m.onnx"), "--calibration-images", "50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and one_line(err) and "No space left" in err
    assert list(tmp_path.iterdir()) == []


@needs_npm
@pytest.mark.parametrize("earlier_page", [True, False])
def test_the_page_on_a_full_disk_keeps_the_earlier_page_whole(earlier_page: bool, small_checkpoint: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys) -> None:
    site = tmp_path / "site"
    if earlier_page:
        assert cli(["export", str(small_checkpoint), "--web", str(site)]) == 0
    before = {p.name: p.read_bytes() for p in site.iterdir()} if earlier_page else None
    real = Path.write_bytes

    def full_at_the_model(self: Path, data: bytes) -> int:  # the page's files fit, its model does not
        if self.name == "model.onnx":
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_the_model)
    assert cli(["export", str(small_checkpoint), "--web", str(site)]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "No space left" in err
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == (["site"] if earlier_page else [])  # nothing half-written
    if earlier_page:
        assert {p.name: p.read_bytes() for p in site.iterdir()} == before


@needs_npm
def test_the_page_never_replaces_a_folder_holding_other_files(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert cli(["export", str(small_checkpoint), "--web", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "notes.txt" in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_export_refuses_to_replace_what_is_not_a_regular_file(small_checkpoint: Path, tmp_path: Path, capsys) -> None:
    """A FIFO, and a link to /dev/null (as root, --onnx /dev/null itself would have replaced the device)."""
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    null = tmp_path / "null.onnx"
    null.symlink_to("/dev/null")
    for flag, target in (("--onnx", fifo), ("--int8", null), ("--onnx", null)):
        assert cli(["export", str(small_checkpoint), flag, str(target)]) == 2
        err = capsys.readouterr().err
        assert one_line(err) and "not a regular file" in err and str(target) in err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.onnx", "pipe.onnx"]


@pytest.mark.parametrize("name", [b"x" * 245 + b".onnx", b"mod\xe9le \xff.onnx"], ids=["250 characters", "not UTF-8"])
def test_long_and_non_utf8_output_names(name: bytes, small_checkpoint: Path, tmp_path: Path) -> None:
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + name))
    ex.export_onnx(small_checkpoint, out, n_check=100)
    report = ex.quantize_int8(out, out.with_name("i8-" + out.name), n_calibration=50, n_test=100)
    assert report.int8_bytes > 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, report.path.name])
    assert float(ex.load_onnx(out)[1]["mean"]) == MEAN


@pytest.mark.parametrize("count", ["-5", "0", "55001", "lots"])
def test_calibration_counts_outside_the_training_images_are_refused(count: str, small_checkpoint: Path,
                                                                    tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli(["export", str(small_checkpoint), "--int8", str(tmp_path / "m.onnx"), "--calibration-images", count])
    assert info.value.code == 2 and "--calibration-images" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"n_calibration .*1 to 55,000"):
        ex.quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", n_calibration=-5)


def test_stale_export_temporaries_are_removed_by_the_next_export(small_checkpoint: Path, tmp_path: Path) -> None:
    """What killed exports left (theirs, and old unowned ones a day old) goes; a live export's stays."""
    host = safefiles.owner_tag().split("-")[1]
    dead = _dead_pid()
    stale = [f".m.onnx.{dead}-{host}.abc123.part.onnx", ".m.onnx.k2j4h5.part.onnx"]  # the second: the old names
    live = f".m.onnx.{os.getpid()}-{host}.xyz789.part.onnx"
    for name in [*stale, live]:
        (tmp_path / name).write_bytes(b"half a model")
    day_ago = time.time() - safefiles.MAX_AGE - 60
    os.utime(tmp_path / stale[1], (day_ago, day_ago))
    ex.export_onnx(small_checkpoint, tmp_path / "m.onnx", n_check=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, "m.onnx"])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


#: ``python -m mnistlib export`` paused just before its file is renamed into place, until a signal comes.
PAUSE_BEFORE_RENAME = r"""
import os, sys, time
real_replace = os.replace
def paused(src, dst, *args, **kwargs):
    if str(dst).endswith(".onnx"):
        open(os.environ["EXPORT_PAUSED"], "w").close()
        time.sleep(900)
    return real_replace(src, dst, *args, **kwargs)
os.replace = paused
from mnistlib.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


STOPS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@pytest.fixture(scope="module")
def stopped_exports(small_checkpoint: Path, tmp_path_factory, data_root: Path) -> dict[str, tuple]:
    """Three ``export`` runs, all at once, each stopped by one signal while its file waits to be renamed:
    name → (output folder, its TMPDIR, pid, exit code, stderr)."""
    procs = {}
    for name in STOPS:
        base = tmp_path_factory.mktemp(f"stopped-{name}")
        (base / "tmp").mkdir()
        env = {**os.environ, "EXPORT_PAUSED": str(base / "PAUSED"), "TMPDIR": str(base / "tmp"),
               "MNISTLIB_DATA": str(data_root), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs[name] = (base, subprocess.Popen([sys.executable, "-c", PAUSE_BEFORE_RENAME, "export",
                                               str(small_checkpoint), "--onnx", str(base / "out" / "m.onnx")],
                                              env=env, stderr=subprocess.PIPE, text=True))
    waiting = dict(procs)
    while waiting:
        for name, (base, proc) in list(waiting.items()):
            if (base / "PAUSED").exists() or proc.poll() is not None:
                proc.send_signal(STOPS[name])
                del waiting[name]
        time.sleep(0.05)
    return {name: (base / "out", base / "tmp", proc.pid, proc.wait(HANG_S), proc.stderr.read())
            for name, (base, proc) in procs.items()}


@pytest.mark.parametrize("sig", list(STOPS))
def test_a_stopped_export_leaves_nothing_after_the_next_one(sig: str, stopped_exports: dict[str, tuple],
                                                            small_checkpoint: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out, work, pid, code, err = stopped_exports[sig]
    assert "Traceback" not in err, err
    if sig == "SIGINT":
        assert code == 130 and _hidden(out) == [] and _scratch(work) == []
    else:  # the killed export's temporary, and its scratch folder
        assert any(f".{pid}-" in name for name in _hidden(out)) and any(f".{pid}-" in n for n in _scratch(work))
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    assert cli(["export", str(small_checkpoint), "--onnx", str(out / "m.onnx")]) == 0
    assert [p.name for p in out.iterdir()] == ["m.onnx"] and _scratch(work) == []
