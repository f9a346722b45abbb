"""One writer per folder: an exclusive lock on a run folder, a static-dataset folder or a sweep folder.

``FolderLock(folder, what)`` takes ``<folder>/.lock`` with :mod:`filelock` and writes who holds it beside it
(``<folder>/.lock.json``: host, pid, since, command). A second writer fails at once with :class:`FolderBusy`,
one line naming the holder, before it has read, repaired or rolled back anything.

Why this is safe against stale locks: on POSIX ``filelock.FileLock`` is ``UnixFileLock``, an ``fcntl.flock``
on the open lock file. The kernel drops that lock when its process dies (``kill -9`` included), so a lock
left by a dead process is simply free: the next writer takes it (and logs whose ``.lock.json`` it replaces).
The ``.lock.json`` is information, never the lock itself. One caveat: a child forked while the lock is held
shares it (``flock`` belongs to the open file description); our forked children (vector-env and loader
workers) die with their parent.

Shared filesystems: on Linux NFS clients (since 2.6.12) ``flock`` is emulated with POSIX byte-range locks,
which the NFS lock manager (NLM for NFSv3, built into NFSv4) enforces across hosts, so the lock holds across
the machines of a cluster when the mount supports locking (not with ``nolock`` / ``local_lock=all`` mounts,
where it is local to each host). A lock of a crashed host is released by the server's lease/grace expiry.
filelock adds no cross-host guarantee of its own: it relies on the OS lock. ``fallback_to_soft=False``: where
``flock`` is missing altogether, acquiring fails loudly instead of degrading to a marker file that a killed
process would leave behind.

Within one process the lock is re-entrant (a count per folder): a Kedro run opens the same run in several
nodes, a sweep worker opens it once per epoch; all of that is the same writer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import filelock

from diamond_kedro.errors import UserError
from diamond_kedro.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
INFO_NAME = ".lock.json"
ACQUIRE_TIMEOUT_S = 0.5  # "at once", with a little slack for a status probe that holds the lock for a moment

_HELD: dict[str, tuple[filelock.BaseFileLock, int]] = {}
_GUARD = threading.RLock()  # re-entrant: a FolderLock's __del__ may run (garbage collection) while it is held


class FolderLockError(UserError, RuntimeError):
    """The folder cannot be locked (cannot be created, no file locks on its filesystem)."""


class FolderBusy(FolderLockError):
    """Another process holds the folder's lock (a second writer): nothing was touched."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def read_holder(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return None


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process that has not written its .lock.json yet"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since", 0))))
    return f"pid {info.get('pid')} on {info.get('host')} since {since} ({info.get('command', '?')})"


def _write_info(folder: Path) -> None:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else "?"}
    atomic_write_text(folder / INFO_NAME, json.dumps(info))


class FolderLock:
    """``with FolderLock(folder, "run"):`` -- or ``acquire()`` / ``release()``; see the module docstring."""

    def __init__(self, folder: Path | str, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._key = ""
        self.held = False

    def acquire(self) -> "FolderLock":
        if self.held:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FolderLockError(f"cannot create {self.what} folder {self.folder}: {exc.strerror or exc}") from None
        key = os.path.realpath(self.folder)
        with _GUARD:
            if key in _HELD:  # this process already writes here (re-entrant)
                lock, count = _HELD[key]
                _HELD[key] = (lock, count + 1)
            else:
                # no soft fallback: a marker-file lock would outlive a killed process, the kernel lock does not
                lock = filelock.FileLock(str(self.folder / LOCK_NAME), thread_local=False, fallback_to_soft=False)
                try:
                    lock.acquire(timeout=ACQUIRE_TIMEOUT_S)
                except filelock.Timeout:
                    raise FolderBusy(
                        f"{self.what} {self.folder} is in use by another writer: {describe_holder(read_holder(self.folder))}; "
                        f"wait for it to end (or stop it) and try again"
                    ) from None
                except OSError as exc:  # no flock on this filesystem, or the folder is not writable
                    raise FolderLockError(f"cannot lock {self.what} {self.folder} ({exc.strerror or exc}): one writer "
                                     f"cannot be ensured on this filesystem") from None
                previous = read_holder(self.folder)
                if previous and previous.get("pid") != os.getpid():
                    dead = previous.get("host") == socket.gethostname() and not pid_alive(int(previous.get("pid", 0)))
                    log.warning("%s %s: taking over the lock left by %s%s", self.what, self.folder,
                                describe_holder(previous), " (dead)" if dead else " (it no longer holds it)")
                _write_info(self.folder)
                _HELD[key] = (lock, 1)
        self._key, self.held = key, True
        return self

    def release(self) -> None:
        if not self.held:
            return
        with _GUARD:
            lock, count = _HELD[self._key]
            if count > 1:
                _HELD[self._key] = (lock, count - 1)
            else:
                del _HELD[self._key]
                try:
                    (self.folder / INFO_NAME).unlink(missing_ok=True)
                except OSError:
                    pass
                lock.release()
        self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a run object dropped without close() (a failed Kedro node) frees its count
        try:
            self.release()
        except Exception:
            pass


def is_locked(folder: Path | str) -> bool:
    """Whether another process holds ``folder``'s lock right now (probes it for an instant; read-only use:
    ``sweep --status`` telling a live driver from a dead one)."""
    folder = Path(folder)
    if os.path.realpath(folder) in _HELD:
        return True
    if not (folder / LOCK_NAME).exists():
        return False
    lock = filelock.FileLock(str(folder / LOCK_NAME), thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


# the name the rest of the project uses for a run folder's lock
def RunLock(folder: Path | str) -> FolderLock:  # noqa: N802  (reads as a class at the call sites)
    return FolderLock(folder, "run")
