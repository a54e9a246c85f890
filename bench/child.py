"""Run one benchmark phase as a child process: wall time, CPU time and peak RSS.

CPU (user + system) and ru_maxrss come from os.wait4 of that child alone, so
each phase is measured on its own and the feed server's process is never counted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True, slots=True)
class Measured:
    argv: tuple[str, ...]
    returncode: int
    timed_out: bool
    wall: float  # seconds, from spawn to reaped: interpreter start-up included
    user: float  # CPU seconds
    system: float
    max_rss_kb: int  # ru_maxrss in KiB: at least the parent's RSS at spawn (see below)
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def rss_mb(self) -> float:
        return self.max_rss_kb / 1024

    def failure(self) -> str | None:
        """Why this run did not succeed, or None."""
        if self.timed_out:
            return "timed out (killed)"
        if self.returncode != 0:
            tail = " | ".join(self.stderr.strip().splitlines()[-3:])
            return f"exit code {self.returncode}" + (f": {tail}" if tail else "")
        return None


def run_measured(argv: Sequence[str], *, cwd: Path, timeout: float) -> Measured:
    """Run ``argv`` to completion (killed after ``timeout`` seconds) and measure it.

    Output goes to temporary files, not pipes: waiting on a child that fills a
    pipe nobody reads would never end.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            process.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
        # reaped here, so Popen must not wait for it again
        process.returncode = os.waitstatus_to_exitcode(status)
        return Measured(
            argv=tuple(argv),
            returncode=process.returncode,
            timed_out=expired.is_set(),
            wall=wall,
            user=usage.ru_utime,
            system=usage.ru_stime,
            max_rss_kb=usage.ru_maxrss,
            stdout=_text(out),
            stderr=_text(err),
        )


def own_peak_rss_kb() -> int:
    """This process's own peak RSS in KiB: VmHWM, else ru_maxrss.

    Linux carries the high-water mark of the memory a process had before exec()
    into its ru_maxrss, and a child spawned with vfork() had its parent's: a
    child's ru_maxrss (and os.wait4's) is at least its parent's RSS at spawn.
    VmHWM belongs to the memory the program itself mapped since exec().
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _text(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")
