"""The soak's processes: the daemon and the SMTP sink, and the daemon's memory.

Both are context managers that stop their process however the block ends (an
exception, Ctrl+C): SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

STOP_WAIT = 15.0  # seconds; `kairan run` must exit within 10 s of SIGTERM
_SINK_READY = "smtp://127.0.0.1:"


class Process:
    """A child process, stopped on exit from the block."""

    def __init__(self, argv: list[str], cwd: Path, output: IO[bytes] | int) -> None:
        self.argv = argv
        self.cwd = cwd
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            # a log file takes stderr too; a pipe is for the ready line only
            stderr=None if self.output == subprocess.PIPE else subprocess.STDOUT,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not running")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM, then SIGKILL after STOP_WAIT: (exit code, seconds to exit)."""
        process, self.process = self.process, None
        if process is None:
            return None, 0.0
        started = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return code, time.monotonic() - started


class Sink(Process):
    """``python -m aggregator.sandbox.smtp_sink --eml-dir DIR``: each message a file."""

    def __init__(self, eml_dir: Path, cwd: Path) -> None:
        argv = [sys.executable, "-m", "aggregator.sandbox.smtp_sink"]
        super().__init__([*argv, "--eml-dir", str(eml_dir)], cwd, subprocess.PIPE)
        self.port = 0

    def __enter__(self) -> Self:
        super().__enter__()
        stdout = self.process.stdout if self.process else None
        if stdout is None:
            raise RuntimeError("the SMTP sink has no stdout")
        line = stdout.readline().decode().strip()
        if not line.startswith(_SINK_READY):
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start: {line!r}")
        self.port = int(line.removeprefix(_SINK_READY))
        return self


@dataclass(frozen=True, slots=True)
class Memory:
    """One sample: seconds since the daemon started, its RSS and its children's."""

    at: float
    rss_kb: int  # the daemon's own process
    children_kb: int  # its parse workers

    @property
    def total_kb(self) -> int:
        return self.rss_kb + self.children_kb


def _rss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in tasks.read_text(encoding="ascii").split()]
        except OSError:
            continue
    return found


def sample(pid: int, at: float) -> Memory:
    """VmRSS of ``pid`` and of its direct children, from /proc."""
    children = sum(_rss_kb(child) for child in _children(pid))
    return Memory(at, _rss_kb(pid), children)
