"""``python -m mnistlib data import DIR``: good files are copied, bad ones refused with one line,
exit code 2, and the data root left exactly as it was. Each subprocess costs a torch import
(a few seconds), so only the four cases of the issue run as subprocesses; the rest call
``main()`` in-process."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from idx_helpers import idx_source
from waiting import HANG_S

from mnistlib._support.files import owner_tag
from mnistlib.apps.cli import main
from mnistlib.config import DATA_ENV
from mnistlib.data import RAW_FILES

REPO = Path(__file__).resolve().parent.parent
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = RAW_FILES


def cli_env(data_env: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(DATA_ENV, None)
    if data_env is not None:
        env[DATA_ENV] = str(data_env)
    return env


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden temp files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@dataclass
class Run:
    root: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def cli_runs(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The four subprocess runs of the issue, started together (each pays a torch import)."""
    tmp = tmp_path_factory.mktemp("cli")
    gz_source = tmp / "downloads"
    gz_source.mkdir()
    for name in RAW_FILES:
        (gz_source / f"{name}.gz").write_bytes(gzip.compress((raw_dir / name).read_bytes(), compresslevel=1))
    good = (raw_dir / TEST_IMAGES).read_bytes()
    cases: dict[str, tuple[Path, bool]] = {  # name -> (source, pass the root through $MNISTLIB_DATA)
        "plain": (raw_dir, False),
        "gz": (gz_source, True),
        "truncated": (idx_source(tmp / "src-truncated", raw_dir, TEST_IMAGES, good[:-1000]), False),
        "wrong-magic": (idx_source(tmp / "src-magic", raw_dir, TEST_IMAGES, b"\x00\x00\x08\x01" + good[4:]), False),
    }
    procs = {}
    for case, (source, via_env) in cases.items():
        root = tmp / f"root-{case}"
        root.mkdir()
        args = [sys.executable, "-m", "mnistlib", "data", "import", str(source)]
        args += [] if via_env else ["--root", str(root)]
        procs[case] = (root, subprocess.Popen(
            args, cwd=REPO, env=cli_env(root if via_env else None),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    runs = {}
    for case, (root, proc) in procs.items():
        out, err = proc.communicate(timeout=HANG_S)
        runs[case] = Run(root, proc.returncode, out, err)
    return runs


def test_import_plain_files(cli_runs: dict[str, Run], raw_dir: Path) -> None:
    run = cli_runs["plain"]
    assert run.returncode == 0, run.stderr
    target = run.root / "MNIST" / "raw"
    assert str(target) in run.stdout
    assert files_in(run.root) == sorted(f"MNIST/raw/{name}" for name in RAW_FILES)
    for name in RAW_FILES:
        assert (target / name).read_bytes() == (raw_dir / name).read_bytes()


def test_import_gz_into_the_env_root(cli_runs: dict[str, Run], raw_dir: Path) -> None:
    run = cli_runs["gz"]  # no --root: $MNISTLIB_DATA decides
    assert run.returncode == 0, run.stderr
    assert files_in(run.root) == sorted(f"MNIST/raw/{name}" for name in RAW_FILES)
    for name in RAW_FILES:
        assert (run.root / "MNIST" / "raw" / name).stat().st_size == (raw_dir / name).stat().st_size
    assert (run.root / "MNIST" / "raw" / TEST_LABELS).read_bytes() == (raw_dir / TEST_LABELS).read_bytes()


@pytest.mark.parametrize("case", ["truncated", "wrong-magic"])
def test_import_refuses_bad_file(case: str, cli_runs: dict[str, Run]) -> None:
    run = cli_runs[case]
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    assert TEST_IMAGES in run.stderr
    assert ("truncated" if case == "truncated" else "magic") in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert files_in(run.root) == []  # nothing half-written, no temp files


# --------------------------------------------------------------------------- in-process main()


def test_main_keeps_existing_root_on_bad_gz(
    raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert main(["data", "import", str(raw_dir), "--root", str(root)]) == 0
    before = {p: p.stat().st_mtime_ns for p in (root / "MNIST" / "raw").iterdir()}
    source = idx_source(tmp_path / "source", raw_dir)
    (source / TRAIN_LABELS).unlink()
    gz = bytearray(gzip.compress((raw_dir / TRAIN_LABELS).read_bytes(), mtime=0))
    gz[10:18] = b"\xff" * 8  # a broken deflate stream
    (source / f"{TRAIN_LABELS}.gz").write_bytes(bytes(gz))
    capsys.readouterr()
    assert main(["data", "import", str(source), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {TRAIN_LABELS}.gz: broken gzip file")
    assert {p: p.stat().st_mtime_ns for p in (root / "MNIST" / "raw").iterdir()} == before


def test_main_missing_folder_and_file(raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import", str(tmp_path / "nowhere"), "--root", str(tmp_path / "root")]) == 2
    assert "not a folder" in capsys.readouterr().err
    source = idx_source(tmp_path / "source", raw_dir)
    (source / TRAIN_IMAGES).unlink()
    assert main(["data", "import", str(source), "--root", str(tmp_path / "root")]) == 2
    assert f"{TRAIN_IMAGES} (or {TRAIN_IMAGES}.gz) not found" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_help_names_the_data_root(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["data", "import", "--help"])
    assert info.value.code == 0
    assert DATA_ENV in capsys.readouterr().out


def test_main_refuses_a_gzip_bomb_in_one_line(
    raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = idx_source(tmp_path / "source", raw_dir)
    (source / TEST_LABELS).unlink()
    (source / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(bytes(1 << 20), compresslevel=9) * 200)  # 200 MB
    assert main(["data", "import", str(source), "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {TEST_LABELS}.gz: this gzip file decompresses to more than the 10,008 bytes")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "root").exists()


def test_main_imports_with_the_umask_and_cleans_a_killed_import(
    raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (raw / f".{TRAIN_IMAGES}.{dead.pid}-{owner_tag().split('-')[1]}.abc123.part").write_bytes(b"half")
    old = os.umask(0o022)
    try:
        assert main(["data", "import", str(raw_dir), "--root", str(tmp_path / "root")]) == 0
    finally:
        os.umask(old)
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)
    assert {(raw / name).stat().st_mode & 0o777 for name in RAW_FILES} == {0o644}
