"""One daemon per database: an exclusive lock on data_dir/kairan.lock while it runs.

The lock is ``flock(2)``: the kernel drops it when the process dies however it
dies (kill -9 included), so a lock file left behind by a crash never blocks the
next start, and nothing has to guess whether a recorded PID is still alive.
The PID written into the file is only for the message a second daemon prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from aggregator.errors import StoreError, UsageError

LOCK_NAME = "kairan.lock"


class DaemonRunning(UsageError):
    """Another `kairan run` already serves this data directory."""


class DaemonLock:
    """``with DaemonLock(settings.data_dir): …`` for the whole of `kairan run`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Not O_TRUNC: the holder's PID must survive a failed attempt.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DaemonRunning(
                f"another kairan run holds {self.path} (pid {holder}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Unlock; the file stays (unlinking it could let two processes each lock
        a different inode of the same name)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    """The holder's PID as written, or "unknown" (it may not have written it yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"


def daemon_running(data_dir: Path) -> bool:
    """Does a `kairan run` hold this data directory's lock now?"""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # A shared lock conflicts only with the daemon's exclusive one.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if it was taken
    return False
