"""Atomic file writes that respect the umask, owned lock files, and cleaning up after runs that died.

Every file mnistlib writes for keeps (checkpoints, imported MNIST files, exported models, the
handwriting store) goes through :func:`atomic_write`: it is written to a hidden
``.<name>.<pid>-<host>.<random>.part`` file in the same folder, made readable as the umask allows,
flushed to disk, then renamed over the target — so a reader sees the old file or the new one, never
half of one. Only a regular file is ever replaced (a device, a FIFO or a folder in the way is refused).
A whole folder (the exported web page) is built the same way by :func:`atomic_folder`. A run killed
in the middle of a write leaves its ``.part`` behind; :func:`clean_stale` removes such files and
folders, and the owned lock files (:func:`create_lock`, :func:`hold_lock`) of runs that died, the next
time a run starts. Which lock names a folder uses is its owner's business: :func:`clean_stale` takes
them as an argument.

The rule that decides what is stale can never delete a file of a live run on this machine:

* a ``.part`` or a lock records its owner (process id and a tag of this host and its
  process namespace). It is stale when that owner is on this host and the process no longer exists
  (or is a zombie). A live process is never judged dead; a reused process id only keeps a stale
  file longer (the next rule then removes it).
* a file without an owner (an older mnistlib), or owned by another host or container sharing the
  folder, whose liveness cannot be checked from here, is stale only when it has not been modified
  for :data:`MAX_AGE` seconds (a day): a write takes seconds, and a stamp's lock is only consulted
  in the second its run started, so nothing live can be hurt by then.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["MAX_AGE", "umask", "owner_tag", "atomic_write", "atomic_folder", "work_folder", "write_bytes", "write_text",
           "create_lock", "hold_lock", "is_stale", "clean_stale", "check_replaceable", "temp_target"]

#: Files whose owner cannot be checked from here are stale after this many seconds unmodified.
MAX_AGE = 24 * 3600.0

#: ``.<target>.<pid>-<host>.<random>.part`` (owned) or mkstemp's ``.<target>.<random>.part`` (older files),
#: optionally followed by a suffix some libraries need (``.part.onnx``).
_PART_RE = re.compile(r"^\.(?P<target>.+?)(?:\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8}))?\.[a-z0-9_]+\.part"
                      r"(?:\.[A-Za-z0-9]{1,8})?$")

#: The longest target name kept whole in a temporary's name (the rest of it takes about 40 characters,
#: and most file systems allow 255): longer ones keep their start and end, so the suffix still shows.
_NAME_KEPT = 160


def umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the portable way: set and restore
    os.umask(mask)
    return mask


def _host_tag() -> str:
    """8 hex digits naming this host and its process namespace (two containers differ)."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return hashlib.sha1(f"{socket.gethostname()}|{pid_ns}".encode()).hexdigest()[:8]


def owner_tag() -> str:
    """``<pid>-<host>``: who is writing, as recorded in temporary and lock file names/contents."""
    return f"{os.getpid()}-{_host_tag()}"


def temp_target(name: str) -> str:
    """How a temporary's name spells its target ``name`` (what :func:`clean_stale`'s ``targets`` sees): bytes
    that are not UTF-8 become ``_`` (libraries that take ``str`` paths choke on them), a very long name keeps
    its start and end."""
    name = "".join("_" if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
    if len(name) > _NAME_KEPT:
        name = f"{name[:_NAME_KEPT // 2]}~{name[-_NAME_KEPT // 2:]}"
    return name


def _temp_prefix(path: Path) -> str:
    """``.<name>.<owner>.``: the start of a temporary's name beside ``path``."""
    return f".{temp_target(path.name)}.{owner_tag()}."


def check_replaceable(path: str | Path) -> None:
    """Raise :class:`FileExistsError` when ``path`` exists and is not a regular file (a device, a FIFO,
    a socket, a folder, or a link to one): an atomic write would replace it with a file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # nothing there (or a dangling link, which the rename replaces)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return  # a file where a folder should be: creating the temporary says so
        raise
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, a FIFO or a socket)"
        raise FileExistsError(errno.EEXIST, f"it exists and is {kind}: refused, only a regular file is replaced",
                              str(path))


def atomic_write(path: str | Path, write: Callable[[Path], object], suffix: str = "") -> Path:
    """Have ``write(tmp)`` fill a temporary file next to ``path``, then rename it to ``path``.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask), is fsynced
    before the rename, and the temporary is removed if anything (Ctrl-C included) interrupts.
    ``suffix`` ends the temporary's name (``".onnx"`` for libraries that judge a file by it). Only a
    regular file is replaced (:func:`check_replaceable`).
    """
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".part" + suffix)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A new hidden folder beside ``path`` to fill; when the block succeeds it is renamed to ``path``.

    A folder already at ``path`` is moved aside first and removed once the new one is in place, so
    ``path`` holds the old folder or the new one, never a mix (deciding whether the old one may go is
    the caller's business). If the block fails, or the process is stopped, the new folder is removed
    (after a SIGKILL, by :func:`clean_stale` at the next run). Its mode is what the umask allows.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(errno.EEXIST, "it exists and is not a folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".part"))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def _swap_in(new: Path, path: Path) -> None:
    """Rename folder ``new`` to ``path``, moving a folder already there aside and then removing it."""
    if not path.exists():
        os.rename(new, path)
        return
    old = path.parent / f"{_temp_prefix(path)}{os.urandom(4).hex()}.part"  # a stale name if we die here
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def work_folder(name: str = "mnistlib-work") -> Iterator[Path]:
    """A private scratch folder in the system's temporary folder, removed when the block ends; the scratch
    folders of processes that died (SIGKILL) are removed first (:func:`clean_stale`)."""
    base = Path(tempfile.gettempdir())
    clean_stale(base, targets=lambda target: target == name)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{name}.{owner_tag()}.", suffix=".part"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`): readers see the old file or the new one."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return True  # not a real owner: never judge it dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner(path: Path) -> tuple[int, str] | None:
    """(pid, host tag) recorded by the writer of a ``.part`` (in its name) or a lock (its content)."""
    m = _PART_RE.match(path.name)
    if m is not None:
        return (int(m["pid"]), m["host"]) if m["pid"] else None
    try:
        with open(path, "rb") as fh:
            words = fh.read(100).decode("ascii", "replace").split()
        return (int(words[0]), words[1]) if len(words) >= 2 and words[0].isdigit() else None
    except OSError:
        return None


def create_lock(path: str | Path) -> bool:
    """Create ``path`` exclusively, holding this process's owner tag; False when it already exists.

    The tag lets :func:`clean_stale` tell when the process that made the lock has died.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, f"{owner_tag().replace('-', ' ')}\n".encode())
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def hold_lock(path: str | Path, timeout: float = 120.0, poll: float = 0.02) -> Iterator[Path]:
    """Hold the owned lock ``path`` (:func:`create_lock`) for the block, waiting while another live
    process holds it; a lock whose process died is removed. After ``timeout`` seconds of waiting on a
    live holder, :class:`TimeoutError` (an ``OSError``) says who holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while not create_lock(path):
        if is_stale(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        if time.monotonic() > deadline:
            owner = _owner(path)
            who = f"process {owner[0]}" if owner else "another process"
            raise TimeoutError(errno.ETIMEDOUT, f"locked by {who} for more than {timeout:g} s", str(path))
        time.sleep(poll)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def is_stale(path: str | Path, now: float | None = None) -> bool:
    """Whether ``path`` (a ``.part`` temporary or a lock from :func:`create_lock`) was left by a run that died
    (see the module's docstring for the rule)."""
    path = Path(path)
    owner = _owner(path)
    if owner is not None and owner[1] == _host_tag():
        return not _alive(owner[0])
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    return age > MAX_AGE


def _ours(name: str, targets: Callable[[str], bool], locks: Callable[[str], bool]) -> bool:
    """Whether ``name`` is a lock that ``locks`` accepts, or a temporary of a file that ``targets`` accepts."""
    if locks(name):
        return True
    m = _PART_RE.match(name)
    return m is not None and targets(m["target"])


def clean_stale(folder: str | Path, targets: Callable[[str], bool] = lambda name: True,
                locks: Callable[[str], bool] = lambda name: False) -> list[Path]:
    """Remove the stale ``.part`` temporaries (files, and folders of :func:`atomic_folder`, of targets whose
    name ``targets`` accepts) and the stale locks (names ``locks`` accepts) in ``folder``; returns what was
    removed.

    Files that cannot be removed (a read-only folder, a race with another cleaner) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not _ours(path.name, targets, locks):
            continue
        try:
            if path.is_symlink() or not is_stale(path):
                continue
            if path.is_dir() and _PART_RE.match(path.name):
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
            else:
                continue
            removed.append(path)
        except OSError:
            continue
    return removed
