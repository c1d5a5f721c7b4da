"""``python -m mnistlib train / evaluate / predict`` end to end on a small subset.

Training runs once per module (512 images, one epoch). Most cases call ``main()`` in-process;
two run as real subprocesses to check the module entry point and its exit codes.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from waiting import HANG_S

from mnistlib._support import files as safefiles
from mnistlib.apps.cli import main
from mnistlib.checkpoints import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, data_root: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path / "default-ckpt"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.delenv("MNISTLIB_QUICK", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A checkpoint folder after ``train --model batchnorm --epochs 1 --subset 512``."""
    folder = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("MNISTLIB_DATA", str(data_root))
    mp.setenv("TQDM_DISABLE", "1")
    try:
        rc = main(["train", "--model", "batchnorm", "--option", "hidden=32", "--epochs", "1", "--subset", "512",
                   "--lr", "3e-3", "--device", "cpu", "--checkpoint-dir", str(folder), "--quiet"])
    finally:
        mp.undo()
    assert rc == 0
    return folder


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> list[Path]:
    """Two MNIST test digits saved as PNG files: one as in MNIST, one dark-on-light and larger."""
    from mnistlib.data import mnist_tensors

    images, _ = mnist_tensors(False, data_root)
    folder = tmp_path_factory.mktemp("digits")
    a, b = folder / "seven.png", folder / "two.png"
    Image.fromarray(images[0].numpy()).save(a)
    Image.fromarray(255 - images[1].numpy()).resize((112, 112)).save(b)
    return [a, b]


def test_train_writes_checkpoints_and_figures(trained: Path) -> None:
    best, final = _only(trained, "best_model_*.pth"), _only(trained, "final_model_*.pth")
    ckpt = load_checkpoint(final)
    assert ckpt.name == "batchnorm" and ckpt.options == {"hidden": 32}
    assert ckpt.hparams["lr"] == 3e-3 and ckpt.hparams["subset"] == 512 and ckpt.epoch == 1
    assert best.stem[len("best_model_"):] == final.stem[len("final_model_"):]
    for png in ("training_history.png", "predictions.png"):
        assert (trained / png).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_prints_test_and_per_class_accuracy(trained: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(_only(trained, "best_model_*.pth"))]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "of 10,000" in out
    assert sum(line.strip().startswith(f"{d}:") for line in out.splitlines() for d in range(10)) == 10


def test_predict_images(trained: Path, digits: list[Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(_only(trained, "best_model_*.pth")), *map(str, digits), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(":" in line and "sure" in line for line in lines)
    assert lines[0].startswith(str(digits[0]))


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def test_bad_files_exit_2_with_one_line(trained: Path, digits: list[Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    best = str(_only(trained, "best_model_*.pth"))
    not_ckpt = tmp_path / "notes.pth"
    not_ckpt.write_text("hello")
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    assert main(["evaluate", str(not_ckpt)]) == 2
    assert "not a PyTorch checkpoint" in _one_line_error(capsys)
    assert main(["evaluate", str(tmp_path / "missing.pth")]) == 2
    assert "no such file" in _one_line_error(capsys)
    assert main(["predict", str(not_ckpt), str(digits[0])]) == 2
    _one_line_error(capsys)
    assert main(["predict", best, str(tmp_path / "missing.png")]) == 2
    assert "no such image" in _one_line_error(capsys)
    assert main(["predict", best, str(not_image)]) == 2
    assert "notes.png" in _one_line_error(capsys)
    assert main(["train", "--resume", str(not_ckpt)]) == 2
    _one_line_error(capsys)
    assert main(["train", "--epochs", "1"]) == 2
    assert "--model" in _one_line_error(capsys)
    assert main(["train", "--model", "batchnorm", "--option", "depth=3", "--epochs", "1", "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path)]) == 2
    assert "depth" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "resnet"],
        ["train", "--model", "batchnorm", "--optimizer", "rmsprop"],
        ["train", "--model", "batchnorm", "--epochs", "0"],
        ["train", "--model", "batchnorm", "--target-accuracy", "150"],
        ["train", "--recipe", "classic", "--resume", "x.pth"],
        ["evaluate"],
        ["predict", "x.pth"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m mnistlib {command}" in out
    assert command != "train" or "--target-accuracy" in out


def test_recipe_with_overrides_and_target(tmp_path: Path) -> None:
    rc = main(["train", "--recipe", "one-by-one", "--epochs", "3", "--subset", "256", "--target-accuracy", "5",
               "--device", "cpu", "--checkpoint-dir", str(tmp_path), "--no-figures", "--quiet"])
    assert rc == 0
    ckpt = load_checkpoint(_only(tmp_path, "final_model_*.pth"))
    assert ckpt.name == "one-by-one" and ckpt.epoch == 1  # stopped at the 5% target after one epoch
    assert ckpt.hparams["augment"] == "crop-rotate15" and ckpt.hparams["scheduler"] == "step"
    assert ckpt.hparams["batch_size"] == 64 and ckpt.hparams["target_accuracy"] == 0.05


def test_resume_from_cli(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    final = str(_only(trained, "final_model_*.pth"))
    assert main(["train", "--resume", final, "--checkpoint-dir", str(tmp_path), "--no-figures"]) == 2
    assert "--epochs" in _one_line_error(capsys)
    assert main(["train", "--resume", final, "--epochs", "1", "--device", "cpu", "--checkpoint-dir",
                 str(tmp_path), "--no-figures", "--quiet"]) == 0
    ckpt = load_checkpoint(_only(tmp_path, "final_model_*.pth"))
    assert ckpt.epoch == 2 and len(ckpt.history["train_loss"]) == 2 and ckpt.options == {"hidden": 32}
    assert ckpt.hparams["lr"] == 3e-3 and ckpt.hparams["subset"] == 512  # settings come from the checkpoint


def test_module_entry_point_exit_codes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bad = subprocess.run([sys.executable, "-m", "mnistlib", "evaluate", str(tmp_path / "none.pth")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=HANG_S)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


# ----------------------------------------------------------------- issue-19 inputs: one line, exit 2, nothing trained


@pytest.mark.parametrize(("extra", "needle"), [
    (["--device", "tpu"], "tpu"),
    (["--device", ""], "device"),
    (["--device", "cuda:abc"], "cuda:abc"),
    (["--device", "meta"], "meta"),
    (["--device", "xpu"], "xpu"),
    (["--option", "hidden=1000000000"], "parameters"),
    (["--option", "hidden=lots"], "expects a int"),
    (["--subset", "70000"], "55,000"),
])
def test_bad_training_input_is_one_line(extra: list[str], needle: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    argv = ["train", "--model", "batchnorm", "--epochs", "1", "--checkpoint-dir", str(tmp_path / "c"), "--quiet",
            *(["--device", "cpu"] if "--device" not in extra else []), *extra]
    assert main(argv) == 2
    assert needle in _one_line_error(capsys)
    assert not list((tmp_path / "c").glob("*.pth"))


def test_folders_that_are_files_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for flag in ("--checkpoint-dir", "--figures"):
        argv = ["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu", "--quiet", flag,
                str(a_file)]
        assert main(argv) == 2
        assert "is a file" in _one_line_error(capsys)


def test_boolean_options_are_read_as_booleans(tmp_path: Path) -> None:
    assert main(["train", "--model", "classic-bn", "--option", "first_bn=False", "--epochs", "1", "--subset", "64",
                 "--device", "cpu", "--checkpoint-dir", str(tmp_path), "--no-figures", "--quiet"]) == 0
    ckpt = load_checkpoint(_only(tmp_path, "final_model_*.pth"))
    assert ckpt.options["first_bn"] is False
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ckpt.model.features[:3])


def test_resume_refuses_changes_to_the_model(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    final = str(_only(trained, "final_model_*.pth"))
    for extra in (["--option", "hidden=5"], ["--model", "classic"]):
        assert main(["train", "--resume", final, "--epochs", "1", "--checkpoint-dir", str(tmp_path), *extra]) == 2
        assert "cannot change a resumed run" in _one_line_error(capsys)
    assert not list(tmp_path.glob("*.pth"))  # never a checkpoint that would not load


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1", "1e5", "fast"])
def test_absurd_learning_rates_are_refused(lr: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "classic", "--lr", lr])
    assert exit_info.value.code == 2 and "--lr" in capsys.readouterr().err


def test_a_diverging_run_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    from mnistlib.callbacks import TrainingDiverged

    def diverge(*args: object, **kwargs: object) -> None:
        raise TrainingDiverged("the loss became nan at epoch 1, batch 3: the weights are ruined")

    monkeypatch.setattr("mnistlib.recipes.fit", diverge)
    assert main(["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path), "--quiet"]) == 2
    assert "loss became nan" in _one_line_error(capsys)


@pytest.mark.parametrize(("text", "value"), [("0.99", 0.99), ("99", 0.99), ("99%", 0.99), ("1%", 0.01), ("1", 1.0)])
def test_target_accuracy_reads_fractions_and_percentages(text: str, value: float) -> None:
    from mnistlib.apps.cli import _fraction

    assert _fraction(text) == pytest.approx(value)


def test_predict_says_not_sure_below_the_threshold(trained: Path, digits: list[Path],
                                                   capsys: pytest.CaptureFixture) -> None:
    best = str(_only(trained, "best_model_*.pth"))
    assert main(["predict", best, str(digits[0]), "--threshold", "1"]) == 0  # nothing is ever that sure
    assert "not sure — maybe" in capsys.readouterr().out
    assert main(["predict", best, str(digits[0]), "--threshold", "0"]) == 0  # everything is
    assert "not sure" not in capsys.readouterr().out


# ----------------------------------------------------------------- issue-30 inputs: paths, full disks, resumed runs


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("extra", [["--optimizer", "sgd"], ["--scheduler", "onecycle"], ["--batch-size", "16"],
                                   ["--lr", "0.5"], ["--subset", "100"], ["--seed", "3"], ["--augment", "rotate5"]])
def test_resume_refuses_to_change_how_the_run_trains(extra: list[str], trained: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Exact resume: the optimizer (and its moments), schedule, batches and data are the checkpoint's."""
    final = str(_only(trained, "final_model_*.pth"))
    assert main(["train", "--resume", final, "--epochs", "1", "--device", "cpu", "--checkpoint-dir", str(tmp_path),
                 "--quiet", *extra]) == 2
    err = _one_line_error(capsys)
    assert "resumed run" in err and extra[1] in err
    assert list(tmp_path.iterdir()) == []


def test_over_long_names_are_one_line(trained: Path, digits: list[Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    long = tmp_path / ("x" * 300)  # longer than any file system allows for one name
    for flag in ("--checkpoint-dir", "--figures"):
        assert main(["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu", "--quiet",
                     flag, str(long / "sub")]) == 2
        assert "too long" in _one_line_error(capsys)
    best = str(_only(trained, "best_model_*.pth"))
    for argv in (["evaluate", str(long)], ["predict", str(long), str(digits[0])], ["predict", best, str(long)],
                 ["data", "import", str(long)]):
        assert main(argv) == 2, argv
        assert "too long" in _one_line_error(capsys)


def test_a_full_disk_while_training_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(safefiles.os, "fsync", _enospc)  # every checkpoint write fails as on a full disk
    assert main(["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path), "--quiet"]) == 2
    assert "No space left" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # no temporary, no lock, no half-written checkpoint


def test_a_full_disk_while_writing_the_figures_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _enospc)
    assert main(["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu",
                 "--checkpoint-dir", str(tmp_path / "c"), "--figures", str(tmp_path / "f"), "--quiet"]) == 2
    assert "No space left" in _one_line_error(capsys)
    assert list((tmp_path / "f").iterdir()) == []
    assert len(list((tmp_path / "c").glob("*.pth"))) == 2  # the checkpoints were written before


def test_names_that_are_not_utf8_work_from_the_command_line(trained: Path, digits: list[Path], tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in a name (a Latin-1 é, a stray 0xff) are names like any other."""
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    image = odd / os.fsdecode(b"seven\xff.png")
    image.write_bytes(digits[0].read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    runs = [subprocess.Popen([sys.executable, "-m", "mnistlib", *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for argv in (
        ["predict", str(_only(trained, "best_model_*.pth")), str(image)],
        ["train", "--model", "classic", "--epochs", "1", "--subset", "64", "--device", "cpu", "--quiet",
         "--checkpoint-dir", str(odd / "ckpt"), "--no-figures"],
    )]
    outs = [(proc.communicate(timeout=HANG_S), proc.returncode) for proc in runs]
    for (_, err), code in outs:
        assert code == 0 and b"Traceback" not in err, err.decode(errors="replace")
    assert b"seven" in outs[0][0][0] and b"sure" in outs[0][0][0]
    assert len(list((odd / "ckpt").glob("*.pth"))) == 2
