"""One writer per directory: a lock a process holds on a training output_dir (its run store and
checkpoints) or a rescore's target for as long as it writes there.

The lock is an advisory ``flock`` on a file in the directory, so the kernel drops it when the holder
ends, however it ends: a crashed or killed run never blocks its own resume. The file names its
holder (process, host, command, start time) for the refusal line a second writer gets. A process
may take the same lock again (the training script before the model loads, the tracker at train
begin); it is released when every taker has let go, and the file is removed then. On a file system
without ``flock`` (some cluster file systems mount without it) the writer goes on unlocked and says so.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from sparks.runs.store import RunStoreError

LOCK_FILE = ".sparks.lock"
"""The lock file of a training output_dir."""
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
"""What ``flock`` raises on a file system that cannot lock."""


class DirectoryTaken(RunStoreError):
    """Another process holds the lock; the message names it."""


class WriterLock:
    """This process's hold on one lock file."""

    def __init__(self, path: Path, descriptor: int | None) -> None:
        self.path = path
        self.descriptor = descriptor
        self.takers = 1


_held: dict[Path, WriterLock] = {}


@atexit.register
def _release_all() -> None:
    """At exit, let go of what this process still holds, so that a clean exit leaves no lock file behind."""
    for lock in list(_held.values()):
        lock.takers = 1
        release(lock)


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says."""
    try:
        record = json.loads(path.read_text())
        return (f"process {record['pid']} on {record['host']} ({record['command']}), "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record['since']))}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"


def acquire(path: Path, what: str) -> WriterLock:
    """Take the lock file ``path`` for this process (again, if it holds it), or refuse in one line.

    ``what`` names the locked thing in the refusal (e.g. "output_dir: outputs/run"). The file is opened,
    locked, and checked to be still the one at ``path`` (a holder removes it when it lets go), so two
    processes never both hold it.
    """
    key = path.absolute()
    if key in _held:
        _held[key].takers += 1
        return _held[key]
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise DirectoryTaken(f"{what}: another process writes there: {_holder(key)}; wait for it to "
                                     f"end, or write elsewhere (its lock: {key})") from None
            except OSError as error:
                os.close(descriptor)
                if error.errno not in UNSUPPORTED:
                    raise
                print(f"sparks: {what}: its file system cannot lock files ({error.strerror}); a second writer "
                      f"there would not be refused", flush=True)
                lock = _held[key] = WriterLock(key, None)
                return lock
            try:
                same = os.stat(key).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)  # its holder let go and removed it between our open and our lock: take the new one
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                  "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]}
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps(record).encode())
    except OSError as error:
        raise RunStoreError(f"{what}: cannot take its writer lock {key} ({error.strerror or error})") from None
    lock = _held[key] = WriterLock(key, descriptor)
    return lock


def release(lock: WriterLock) -> None:
    """Let go of one take of ``lock``; the last one removes the file and unlocks it."""
    lock.takers -= 1
    if lock.takers > 0 or _held.get(lock.path) is not lock:
        return
    del _held[lock.path]
    try:
        lock.path.unlink(missing_ok=True)  # while still locked: no one can take a file about to vanish
    except OSError:
        pass  # a lock file left behind is not locked: it blocks no one
    if lock.descriptor is not None:
        os.close(lock.descriptor)


def holds(path: Path) -> bool:
    """Whether this process holds the lock file ``path``."""
    return path.absolute() in _held


def output_dir_lock(output_dir: str | Path) -> Path:
    """The lock file of a training output directory."""
    return Path(output_dir) / LOCK_FILE


def lock_output_dir(output_dir: str | Path) -> WriterLock:
    """The writer lock of a training output directory: its run store and its checkpoints."""
    return acquire(output_dir_lock(output_dir), f"output_dir: {output_dir}")
