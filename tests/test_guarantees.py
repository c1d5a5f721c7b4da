"""The guarantees the README promises, each exercised the way a hostile or careless user would:

1. checkpoints are written atomically and every one left behind loads, however a run is stopped
   (SIGINT, SIGTERM, SIGKILL at several moments of a real ``train`` run, each moment one the run
   shows — a file it creates — never a guessed delay);
2. a checkpoint is never unpickled as code (payloads that would create a file are refused, and
   the file is never created);
3. loading a checkpoint is bounded (the real model is never built from a crafted file: shown by
   construction, with a spy, not by timing; large, shared, self-referencing, deep or out-of-range
   fields are refused, the large ones before ``torch.load`` runs);
4. bad input to the command line gets one line and exit code 2 (the checkpoint and data parts, and a
   real full file system);
5. nothing half-written is left after the next start (``clean_stale`` removes what killed runs left),
   and an atomic write replaces only a regular file.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from idx_helpers import idx_source
from waiting import HANG_S

from mnistlib import checkpoints as ck
from mnistlib import data
from mnistlib._support import files as safefiles
from mnistlib.apps.cli import main
from mnistlib.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mnistlib.data import RAW_FILES
from mnistlib.models import get_model, list_models

REPO = Path(__file__).resolve().parent.parent
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = RAW_FILES


def _save(path: Path, name: str = "batchnorm", **options: object) -> Path:
    return save_checkpoint(path, get_model(name, **options), history={"val_acc": [0.5]}, mean=0.1307, std=0.3081)


def _rewrite(good: Path, out: Path, **changes: object) -> Path:
    payload = torch.load(good, weights_only=True) | changes
    torch.save(payload, out)
    return out


# --------------------------------------------------------------------------- 2. never unpickled as code


class _CreatesAFile:
    """Unpickled as code, this would create ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (str(self.target), "w"))


def _zip_with_data_pkl(pkl: bytes) -> bytes:
    """A genuine torch zip archive whose pickle is replaced by ``pkl``."""
    buf = io.BytesIO()
    torch.save({"format": ck.FORMAT}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, pkl if item.filename.endswith("data.pkl") else zin.read(item))
    return out.getvalue()


def _malicious(kind: str, marker: Path, path: Path) -> None:
    payload = {"format": ck.FORMAT, "name": "batchnorm", "state_dict": {}, "mean": 0.1, "std": 0.3,
               "extra": {"x": _CreatesAFile(marker)}}
    if kind == "zip":
        torch.save(payload, path)
    elif kind == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif kind == "swapped-pkl":
        path.write_bytes(_zip_with_data_pkl(pickle.dumps(payload, protocol=2)))
    else:  # a bare pickle, protocol 0 (text), 2 or 5
        path.write_bytes(pickle.dumps(payload, protocol=int(kind.removeprefix("pickle"))))


@pytest.mark.parametrize("kind", ["zip", "legacy", "swapped-pkl", "pickle0", "pickle2", "pickle5"])
def test_a_malicious_pickle_is_refused_as_code_and_never_runs(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "best_model_20240101_120000.pth"
    _malicious(kind, marker, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "code" in msg and "io.open" in msg and "truncated" not in msg and "\n" not in msg
    assert not marker.exists()


def test_the_cli_refuses_a_malicious_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker, path = tmp_path / "PWNED", tmp_path / "evil.pth"
    _malicious("zip", marker, path)
    image = tmp_path / "digit.png"
    image.write_bytes(b"")
    assert main(["predict", str(path), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "code" in err
    assert not marker.exists()


# --------------------------------------------------------------------------- 3. never beyond the weights


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model ``load_checkpoint`` builds, by device; building one anywhere but on ``meta``
    from a crafted file fails the test before any memory is taken."""
    seen: list[str] = []
    real = ck.get_model

    def spy(name: str, **options: object) -> torch.nn.Module:
        device = str(torch.get_default_device())
        seen.append(device)
        if device != "meta" and options.get("hidden", 0) > 10_000:
            raise AssertionError(f"a real model was built from crafted options {options}")
        return real(name, **options)

    monkeypatch.setattr(ck, "get_model", spy)
    return seen


def test_options_naming_a_huge_model_are_refused_before_it_is_built(tmp_path: Path, builds: list[str]) -> None:
    good = _save(tmp_path / "good.pth", hidden=32)
    bad = _rewrite(good, tmp_path / "huge.pth", options={"hidden": 1_000_000_000})  # 12.5 TB of weights
    assert bad.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match="do not fit model 'batchnorm'") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)
    assert builds == ["meta"]  # shapes compared on the meta device; the real model was never built


def test_options_that_overflow_are_refused(tmp_path: Path, builds: list[str]) -> None:
    good = _save(tmp_path / "good.pth", hidden=32)
    bad = _rewrite(good, tmp_path / "overflow.pth", options={"hidden": 10**18})
    with pytest.raises(CheckpointError, match="cannot rebuild model 'batchnorm'"):
        load_checkpoint(bad)
    assert builds == ["meta"]


def test_weights_that_repeat_data_are_refused_before_any_build(tmp_path: Path, builds: list[str]) -> None:
    """Views with stride 0 load from a tiny file and match a huge model's shapes exactly."""
    with torch.device("meta"):
        shapes = get_model("batchnorm", hidden=1_000_000).state_dict()
    good = _save(tmp_path / "good.pth", hidden=32)
    stored = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}
    bad = _rewrite(good, tmp_path / "views.pth", options={"hidden": 1_000_000}, state_dict=stored)
    assert bad.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="repeat data"):
        load_checkpoint(bad)
    assert builds == []


def test_a_long_list_option_is_refused_before_any_build(tmp_path: Path, builds: list[str]) -> None:
    """A list option can mean one layer per entry: even on meta, 10⁵ layers would take a gigabyte."""
    good = _save(tmp_path / "good.pth", "classic")
    bad = _rewrite(good, tmp_path / "layers.pth", options={"widths": [8] * 100_000})
    with pytest.raises(CheckpointError, match="100,000 entries"):
        load_checkpoint(bad)
    assert builds == []


def test_a_compressed_record_is_refused_before_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch reads deflated zip records too: 40 MB of weights would come from a 40 kB file."""
    raw = io.BytesIO()
    torch.save({"format": ck.FORMAT, "w": torch.zeros(10_000_000)}, raw)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item))
    assert bomb.stat().st_size < 200_000

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called on a compressed archive")

    monkeypatch.setattr(ck.torch, "load", never)
    with pytest.raises(CheckpointError, match="compressed"):
        load_checkpoint(bomb)


@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_loads_through_the_meta_check(name: str, tmp_path: Path, builds: list[str]) -> None:
    torch.manual_seed(0)
    model = get_model(name)
    path = save_checkpoint(tmp_path / "m.pth", model, mean=0.1307, std=0.3081)
    loaded = load_checkpoint(path).model
    assert builds == ["meta", "cpu"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def _crafted(tmp_path: Path, name: str = "crafted.pth", **changes: object) -> Path:
    """A real checkpoint with some fields replaced (what an attacker or a broken tool could write)."""
    good = _save(tmp_path / "good.pth", "classic")
    return _rewrite(good, tmp_path / name, **changes)


@pytest.fixture
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call to torch.load: a file refused before it is materialised never reaches it."""
    calls: list[str] = []
    real = ck.torch.load

    def spy(f: object, *args: object, **kwargs: object) -> object:
        calls.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(ck.torch, "load", spy)
    return calls


@pytest.mark.parametrize("field", ["hparams", "extra"])
@pytest.mark.parametrize("kind", ["bytes", "text", "list"])
def test_large_fields_are_refused_before_they_are_loaded(field: str, kind: str, tmp_path: Path,
                                                         no_torch_load: list[str]) -> None:
    """The weights are 87 kB; a field may not make loading take many times more (torch lets bytes through)."""
    value = {"bytes": b"x" * 20_000_000, "text": "x" * 20_000_000, "list": list(range(2_000_000))}[kind]
    crafted = _crafted(tmp_path, **{field: {"payload": value}})
    no_torch_load.clear()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(crafted)
    assert "\n" not in str(info.value) and no_torch_load == []  # refused from its pickle's opcodes, unrun
    assert "MiB" in str(info.value) or "operations" in str(info.value) or "characters" in str(info.value)


def _shared(depth: int) -> list:
    """A list holding the same list twice, ``depth`` times over: 2**depth leaves from a tiny pickle."""
    node: list = [1]
    for _ in range(depth):
        node = [node, node]
    return node


def _self_referencing() -> list:
    loop: list = []
    loop.append(loop)
    return loop


def _nested(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node]
    return node


@pytest.mark.parametrize(("make", "words"), [
    (lambda: {"extra": {"x": _shared(20)}}, "twice"),  # the field walk visits each object once (it exploded)
    (lambda: {"extra": {"x": _self_referencing()}}, "twice"),
    (lambda: {"hparams": {"x": _self_referencing()}}, "twice"),
    (lambda: {"history": {"val_acc": _self_referencing()}}, "twice"),
    (lambda: {"extra": {"x": _nested(100)}}, "deep"),
    (lambda: {"mean": 10**400}, "out of range"),
    (lambda: {"history": {"val_acc": [0.5, -(10**30)]}}, "out of range"),
    (lambda: {"epoch": 10**12}, "epoch"),
    (lambda: {"hparams": {"epochs": "ten"}}, "epochs"),
    (lambda: {"extra": {"x": b"abc"}}, "bytes"),
], ids=["shared", "self-ref extra", "self-ref hparams", "self-ref history", "deep", "huge mean", "huge history",
        "epoch", "hparams type", "bytes"])
def test_crafted_structures_are_one_line(make, words: str, tmp_path: Path) -> None:
    sys.setrecursionlimit(10_000)  # pickling a 100-deep list needs it; loading must not
    crafted = _crafted(tmp_path, **make())
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(crafted)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("options", "words"), [
    ({"first_bn": "False"}, "first_bn"),  # a string where the model takes true or false: it was truthy
    ({"first_bn": 1}, "first_bn"),
    ({"hidden": 64.0}, "hidden"),
    ({"hidden": True}, "hidden"),
])
def test_options_of_the_wrong_type_are_refused(options: dict, words: str, tmp_path: Path, builds: list[str]) -> None:
    good = _save(tmp_path / "good.pth", "classic-bn")  # first_bn=True, hidden=64: the weights fit either way
    crafted = _rewrite(good, tmp_path / "crafted.pth", options=options)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(crafted)
    assert "\n" not in str(info.value) and builds == []


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "app"])
def test_every_command_refuses_a_crafted_structure_in_one_line(command: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    crafted = _crafted(tmp_path, "best_model_20240101_000000.pth", extra={"x": _self_referencing()})
    if command == "app":
        from mnistlib.apps import webapp

        with pytest.raises(webapp.AppModelError) as info:
            webapp.load_app_model(crafted)
        assert "twice" in str(info.value) and "\n" not in str(info.value)
        return
    argv = {"predict": ["predict", str(crafted), str(tmp_path / "good.pth")],
            "evaluate": ["evaluate", str(crafted), "--device", "cpu"],
            "export": ["export", str(crafted), "--onnx", str(tmp_path / "m.onnx")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "twice" in err


# --------------------------------------------------------------------------- 4. one line and exit 2


@pytest.mark.parametrize(
    "make",
    ["huge-options", "wrong-types", "garbage", "unreadable"],
)
def test_evaluate_refuses_a_bad_checkpoint_in_one_line(
    make: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _save(tmp_path / "good.pth", hidden=32)
    bad = tmp_path / "bad.pth"
    if make == "huge-options":
        _rewrite(good, bad, options={"hidden": 1_000_000_000})
    elif make == "wrong-types":
        _rewrite(good, bad, mean="0.13", epoch={"n": 1})
    elif make == "garbage":
        bad.write_bytes(os.urandom(5000))
    else:
        bad.write_bytes(good.read_bytes())
        real_open = open

        def denied(file: object, *args: object, **kwargs: object) -> object:
            if str(file) == str(bad):  # what a mode-000 file gives (root reads anything)
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", denied)
    assert main(["evaluate", str(bad), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision

    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    monkeypatch.setattr("urllib.request.urlopen", fail)


def test_missing_data_prints_both_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = _save(tmp_path / "good.pth")
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    assert main(["evaluate", str(good), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "internet" in err and "python -m mnistlib data import" in err and TEST_LABELS in err


def test_a_corrupt_data_root_is_one_line_naming_the_file(tmp_path: Path, raw_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    labels = (raw_dir / TEST_LABELS).read_bytes()
    root = tmp_path / "root"
    idx_source(root / "MNIST" / "raw", raw_dir, TEST_LABELS, labels[:-1] + bytes([10]))  # a label 10
    monkeypatch.setenv(data.DATA_ENV, str(root))
    assert main(["evaluate", str(_save(tmp_path / "good.pth")), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and TEST_LABELS in err and "0–9" in err


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system with 60 kB free: a 2 MB tmpfs, nearly filled (needs root; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode(errors='replace').strip()[:100]}")
    try:
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        (mount / "filler").write_bytes(b"\0" * (free - 60_000))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_for_every_command(full_disk: Path, data_root: Path, raw_dir: Path,
                                                   tmp_path: Path) -> None:
    """Real processes writing onto a real full file system: one error: line each, and nothing half-written."""
    ckpt = _save(tmp_path / "m.pth")  # 420 kB of weights: more than is free
    env = {**os.environ, "MNISTLIB_DATA": str(data_root), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    commands = {
        "train": ["train", "--model", "batchnorm", "--epochs", "1", "--subset", "64", "--device", "cpu", "--quiet",
                  "--checkpoint-dir", str(full_disk / "ckpt")],
        "export": ["export", str(ckpt), "--onnx", str(full_disk / "m.onnx")],
        "data import": ["data", "import", str(raw_dir), "--root", str(full_disk / "root")],
    }
    if shutil.which("npm"):
        commands["page"] = ["export", str(ckpt), "--web", str(full_disk / "site")]
    runs = {name: subprocess.Popen([sys.executable, "-m", "mnistlib", *argv], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True) for name, argv in commands.items()}
    for name, proc in runs.items():
        _, err = proc.communicate(timeout=HANG_S)
        assert proc.returncode == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (name, err)
        assert "No space left" in err, (name, err)
    left = sorted(str(p.relative_to(full_disk)) for p in full_disk.rglob("*") if not p.is_dir())
    assert left == ["filler"], left  # at most the folders they made


# --------------------------------------------------------------------------- 1 and 5. kill a real run

#: Runs the CLI with a pause at a moment the test can see, which lasts until a signal arrives: nothing here
#: depends on how fast the machine is. $KILLTEST_SLOW_SAVE: epoch 2's best checkpoint (over epoch 1's) is
#: half-written in its temporary file when the flag appears; $KILLTEST_TRAINING: epoch 2's first batch is
#: done (epoch 1 is saved).
HOOK = r"""
import os, signal, sys, time
received = []
real_signal = signal.signal
def recording_signal(signum, handler):  # every handler the run installs also notes that a signal came
    if callable(handler):
        inner = handler
        def handler(s, frame, inner=inner):
            received.append(s)
            return inner(s, frame)
    return real_signal(signum, handler)
signal.signal = recording_signal
def pause_until_signalled(flag):
    open(flag, "w").close()
    deadline = time.monotonic() + 900
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
import pathlib
real_write, saves = pathlib.Path.write_bytes, []
def slow_write(self, data):
    if not (self.name.endswith(".part") and "_model_" in self.name):
        return real_write(self, data)
    saves.append(self.name)
    if len(saves) == 3 and os.environ.get("KILLTEST_SLOW_SAVE"):  # epoch 1 wrote best and final; epoch 2's best
        real_write(self, bytes(data)[: len(data) // 2])
        pause_until_signalled(os.environ["KILLTEST_SLOW_SAVE"])
    return real_write(self, data)
pathlib.Path.write_bytes = slow_write
import mnistlib.callbacks as cb
real_after_batch = cb.StopOnInterrupt.after_batch
def after_batch(self, state):
    if state.epoch == 2 and state.batch == 1 and os.environ.get("KILLTEST_TRAINING"):
        pause_until_signalled(os.environ["KILLTEST_TRAINING"])
    real_after_batch(self, state)
cb.StopOnInterrupt.after_batch = after_batch
from mnistlib.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
MOMENTS = ["startup", "mid-save", "training"]
#: The file whose appearance marks each moment: ``python -m mnistlib`` creates the first as soon as Ctrl-C is
#: handled, while it still imports PyTorch (MNISTLIB_TEST_STARTED); the HOOK creates the others.
FLAGS = {"startup": ("MNISTLIB_TEST_STARTED", "STARTED"), "mid-save": ("KILLTEST_SLOW_SAVE", "SAVING"),
         "training": ("KILLTEST_TRAINING", "TRAINING")}
@dataclass
class Killed:
    folder: Path
    returncode: int
    stderr: str
    left: list[str]  # every file in the folder after the process ended
    removed: list[str]  # what clean_stale then removed
    after: list[str]  # what is left after clean_stale


@pytest.fixture(scope="module")
def killed_runs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Killed]:
    """Nine short seeded ``train`` runs, each stopped by one signal at one moment, all at once."""
    base = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "MNISTLIB_DATA": str(data_root), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs: dict[tuple[str, str], tuple[Path, subprocess.Popen, Path]] = {}
    for sig in SIGNALS:
        for moment in MOMENTS:
            folder = base / f"{sig}-{moment}" / "checkpoints"
            folder.mkdir(parents=True)
            variable, name = FLAGS[moment]
            flag = folder.parent / name
            cli = ["-m", "mnistlib"] if moment == "startup" else ["-c", HOOK]
            args = [sys.executable, *cli, "train", "--model", "classic", "--epochs", "2", "--subset", "2000",
                    "--seed", "0", "--device", "cpu", "--checkpoint-dir", str(folder), "--no-figures", "--quiet"]
            proc = subprocess.Popen(args, cwd=base, env=env | {variable: str(flag)}, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            procs[(sig, moment)] = (folder, proc, flag)
    waiting = dict(procs)
    deadline = time.monotonic() + HANG_S
    while waiting and time.monotonic() < deadline:
        for key, (_, proc, flag) in list(waiting.items()):
            if flag.exists() or proc.poll() is not None:
                proc.send_signal(SIGNALS[key[0]])
                del waiting[key]
        time.sleep(0.02)
    runs = {}
    for key, (folder, proc, _) in procs.items():
        try:
            _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 60))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        left = sorted(p.name for p in folder.iterdir())
        removed = sorted(p.name for p in ck.clean_stale(folder))
        runs[key] = Killed(folder, proc.returncode, err, left, removed, sorted(p.name for p in folder.iterdir()))
    return runs


CASES = [(s, m) for s in SIGNALS for m in MOMENTS]


@pytest.mark.parametrize(("sig", "moment"), CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_every_checkpoint_left_by_a_stopped_run_loads(sig: str, moment: str,
                                                      killed_runs: dict[tuple[str, str], Killed]) -> None:
    run = killed_runs[(sig, moment)]
    assert "Traceback" not in run.stderr, run.stderr
    for name in run.after:
        assert not name.startswith("."), f"{name} survived clean_stale"
        load_checkpoint(run.folder / name)  # raises if half-written
    if moment != "startup":  # epoch 1's best was on disk before the signal
        assert any(name.startswith("best_model_") for name in run.after), run.left


def test_a_write_killed_half_way_leaves_the_previous_checkpoint(killed_runs: dict[tuple[str, str], Killed]) -> None:
    """SIGKILL in the middle of writing epoch 2's best over epoch 1's: epoch 1's is still there, whole."""
    run = killed_runs[("SIGKILL", "mid-save")]
    best = [name for name in run.after if name.startswith("best_model_")]
    assert len(best) == 1 and load_checkpoint(run.folder / best[0]).epoch == 1
    assert any(name.endswith(".part") for name in run.removed)  # the half-written temporary, cleaned


@pytest.mark.parametrize("moment", ["mid-save", "training"])
def test_ctrl_c_stops_cleanly_and_keeps_the_best_checkpoint(moment: str,
                                                            killed_runs: dict[tuple[str, str], Killed]) -> None:
    run = killed_runs[("SIGINT", moment)]
    # During a save the signal waits for the files; epoch 2 was the last, so that run then simply ends.
    assert run.returncode == (0 if moment == "mid-save" else 130), run.stderr
    assert run.removed == []  # it released its lock and left no temporary itself
    best = [name for name in run.after if name.startswith("best_model_")]
    assert len(best) == 1 and load_checkpoint(run.folder / best[0]).epoch == (2 if moment == "mid-save" else 1)


@pytest.mark.parametrize("moment", ["mid-save", "training"])
def test_sigkill_leftovers_are_cleaned_at_the_next_start(moment: str,
                                                         killed_runs: dict[tuple[str, str], Killed]) -> None:
    run = killed_runs[("SIGKILL", moment)]
    assert run.returncode == -signal.SIGKILL
    assert any(name.endswith(".lock") for name in run.left)  # the dead run's lock…
    assert [name for name in run.removed if name.endswith(".lock")] == [n for n in run.left if n.endswith(".lock")]
    assert not any(name.startswith(".") for name in run.after)  # …and everything hidden is gone


@pytest.mark.parametrize("moment", ["mid-save", "training"])
def test_sigterm_stops_like_ctrl_c(moment: str, killed_runs: dict[tuple[str, str], Killed]) -> None:
    run = killed_runs[("SIGTERM", moment)]
    assert run.returncode == (0 if moment == "mid-save" else 130), run.stderr
    assert run.removed == []  # SIGTERM leaves no lock and no temporary behind
    assert "Traceback" not in run.stderr and run.stderr.strip()  # it says that it stopped


def test_ctrl_c_during_startup_is_one_line(killed_runs: dict[tuple[str, str], Killed]) -> None:
    """Sent once ``python -m mnistlib`` says it handles Ctrl-C (while it still imports PyTorch)."""
    run = killed_runs[("SIGINT", "startup")]
    assert run.returncode == 130 and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_killed_data_import_is_cleaned_at_the_next_import(raw_dir: Path, tmp_path: Path) -> None:
    """A ``data import`` killed (SIGKILL) just before its rename leaves a ``.part``; the next one removes it."""
    root = tmp_path / "root"
    pid = os.fork()
    if pid == 0:  # the child: die at the first rename, as `kill -9` would
        try:
            data.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
            data.import_idx(raw_dir, root)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    raw = root / "MNIST" / "raw"
    parts = [p.name for p in raw.iterdir()]
    assert len(parts) == 1 and parts[0].endswith(".part") and f".{pid}-" in parts[0]
    assert safefiles.is_stale(raw / parts[0])
    data.import_idx(raw_dir, root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)


# --------------------------------------------------------------------------- 5. atomic files: what they replace, names


def test_an_atomic_write_replaces_only_a_regular_file(tmp_path: Path) -> None:
    """A FIFO, a link to a device, a folder: refused, and left as they were (/dev/null stays a device)."""
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    link = tmp_path / "null.onnx"
    link.symlink_to("/dev/null")
    (tmp_path / "folder.onnx").mkdir()
    for target in (fifo, link, tmp_path / "folder.onnx"):
        with pytest.raises(FileExistsError, match="refused"):
            safefiles.write_bytes(target, b"model")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx", "null.onnx", "pipe.onnx"]
    regular = tmp_path / "model.onnx"
    regular.write_bytes(b"old")
    os.symlink(regular, tmp_path / "link-to-file.onnx")
    safefiles.write_bytes(tmp_path / "link-to-file.onnx", b"new")  # the link itself becomes the file
    assert regular.read_bytes() == b"old" and (tmp_path / "link-to-file.onnx").read_bytes() == b"new"


@pytest.mark.parametrize("name", [b"x" * 250 + b".pth", b"caf\xe9 \xff.pth"], ids=["250 characters", "not UTF-8"])
def test_long_and_non_utf8_names_get_temporaries_that_clean_stale_knows(name: bytes, tmp_path: Path) -> None:
    target = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + name))
    seen: list[str] = []

    def write(tmp: Path) -> None:
        seen.append(tmp.name)
        tmp.write_bytes(b"data")
        str(tmp).encode("utf-8")  # what a library that takes str paths does with it: it must not fail

    safefiles.atomic_write(target, write)
    assert target.read_bytes() == b"data" and len(seen[0]) < 255
    dead = seen[0].replace(f".{os.getpid()}-", f".{_dead_pid()}-")
    (tmp_path / dead).write_bytes(b"half")
    assert [p.name for p in safefiles.clean_stale(tmp_path, targets=lambda n: n.endswith(".pth"))] == [dead]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_atomic_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with safefiles.atomic_folder(site) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(OSError, match="No space"), safefiles.atomic_folder(site) as tmp:
        (tmp / "a").write_text("2")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["site"] and (site / "a").read_text() == "1"
    with safefiles.atomic_folder(site) as tmp:
        (tmp / "b").write_text("3")
    assert [p.name for p in tmp_path.iterdir()] == ["site"] and [p.name for p in site.iterdir()] == ["b"]


def test_a_killed_atomic_folder_is_cleaned_by_the_next_run(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # the child: killed while filling the new folder
        try:
            with safefiles.atomic_folder(tmp_path / "site") as tmp:
                (tmp / "half").write_text("x")
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".site.{pid}-") and left[0].endswith(".part")
    assert [p.name for p in safefiles.clean_stale(tmp_path, targets=lambda n: n == "site")] == left
    assert list(tmp_path.iterdir()) == []


def test_an_owned_lock_waits_for_its_holder_and_takes_over_from_the_dead(tmp_path: Path) -> None:
    lock = tmp_path / ".store.lock"
    lock.write_text(f"{_dead_pid()} {safefiles.owner_tag().split('-')[1]}\n")  # left by a process that died
    with safefiles.hold_lock(lock):
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(TimeoutError, match=f"process {os.getpid()}"), safefiles.hold_lock(lock, timeout=0):
            pass  # a live holder (this process) is never pushed aside
    assert not lock.exists()
