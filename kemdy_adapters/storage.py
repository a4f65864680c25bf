"""Small, safe file writes: JSON files are replaced atomically, so a reader never sees half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .faults import pause


def write_json(path: str | Path, data) -> None:
    """Writes `data` as JSON to a temporary file beside `path`, then renames it over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file 0600; a results file follows the umask
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, ensure_ascii=False, allow_nan=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        pause("json")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | Path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


class RunLockedError(RuntimeError):
    """Another live process holds the folder's lock."""


class RunLock:
    """An exclusive lock on a run or benchmark folder (`<folder>/.lock`, holding the owner's pid, host and
    start time), so that two runs never train the same cells at once. A lock left by a process that no longer
    exists (killed) is detected as stale, said, and taken over. Use as a context manager."""

    def __init__(self, folder: str | Path, command: str = ""):
        self.path = Path(folder) / ".lock"
        self.command = command
        self.held = False

    def __enter__(self) -> RunLock:
        import socket
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": self.command}
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
            except FileExistsError:
                owner = read_json(self.path, {}) if self.path.stat().st_size else {}
                if _alive(owner, record["host"]):
                    raise RunLockedError(
                        f"{self.path.parent} is in use by process {owner.get('pid')} on {owner.get('host')} (since "
                        f"{owner.get('started')}: {owner.get('command') or 'a kemdy-adapters run'}); wait for it to "
                        f"finish or stop it") from None
                import logging

                logging.getLogger(__name__).warning(
                    "%s: removing a stale lock of process %s on %s (no longer running)", self.path.parent,
                    owner.get("pid"), owner.get("host"))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
            self.held = True
            return self
        raise RunLockedError(f"{self.path}: could not take the lock")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(owner: dict, host: str) -> bool:
    """Whether the lock's owner still runs (a lock from another host is taken as alive: it cannot be checked)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("host") != host:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_writable(folder: str | Path) -> Path:
    """Creates `folder` if needed and checks that files can be written in it, before any work is done there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OSError(f"{folder}: cannot write the run's files there ({error.strerror or error})") from error
    return folder
