"""DaemonLock across real processes: one holder, a clear refusal, no stale locks."""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.daemon_lock import DaemonLock, DaemonRunning, daemon_running
from aggregator.errors import UsageError
from aggregator.runtime import open_runtime
from tests.support import builders

ROOT = Path(__file__).parents[2]
HOLD = """
import sys
from pathlib import Path
from aggregator.daemon_lock import DaemonLock
with DaemonLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""
TRY = """
import sys
from pathlib import Path
from aggregator.daemon_lock import DaemonLock, DaemonRunning, daemon_running
from aggregator.runtime import open_runtime
from tests.support import builders
try:
    DaemonLock(Path(sys.argv[1])).acquire()
except DaemonRunning as e:
    print(e)
    sys.exit(e.exit_code)
"""


def python(
    script: str, data_dir: Path, stdin: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, str(data_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        stdin=stdin,
        stdout=subprocess.PIPE,
    )


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the lock on tmp_path until its stdin closes."""
    proc = python(HOLD, tmp_path, stdin=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the holder did not take the lock within 10 s"
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_a_second_daemon_is_refused_with_the_holders_pid(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    lock = DaemonLock(tmp_path)
    with pytest.raises(DaemonRunning) as caught:
        lock.acquire()
    assert str(caught.value) == (
        f"another kairan run holds {tmp_path / 'kairan.lock'} "
        f"(pid {holder.pid}); stop it first"
    )
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == 2


def test_another_process_is_refused_while_we_hold_it(tmp_path: Path) -> None:
    with DaemonLock(tmp_path) as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"
        out, _ = python(TRY, tmp_path).communicate(timeout=10)
    assert out == (
        f"another kairan run holds {lock.path} (pid {os.getpid()}); stop it first\n"
    )


def test_a_killed_holder_leaves_no_lock_behind(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    # The file survives with the dead process's PID in it; only flock counts.
    assert (tmp_path / "kairan.lock").read_text() == f"{holder.pid}\n"
    with DaemonLock(tmp_path) as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    first = DaemonLock(tmp_path / "new" / "dir")
    # flock is per open file: a second open in the same process conflicts too
    with first, pytest.raises(DaemonRunning):
        DaemonLock(first.path.parent).acquire()
    assert first.path.read_text() == ""
    with DaemonLock(first.path.parent) as again:
        assert again.path.read_text() == f"{os.getpid()}\n"


def test_daemon_running_sees_the_holder_only_while_it_holds(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert daemon_running(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert not daemon_running(tmp_path)
    assert not daemon_running(tmp_path / "never-used")


def test_the_cli_leaves_checkpoints_to_a_running_daemon(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """While a daemon holds the data directory, other connections never
    checkpoint (issue 6: the daemon is the only checkpointer)."""
    # The holder locks tmp_path itself: the data directory is that.
    config = dataclasses.replace(builders.settings(tmp_path), data_dir=tmp_path)
    with open_runtime(config) as cli:
        assert cli.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    with open_runtime(config, checkpointer=True) as daemon:
        assert daemon.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with open_runtime(config) as alone:
        assert alone.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
