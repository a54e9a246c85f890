"""A helper process driven by one-line commands on stdin: both ends of the pipe.

The benchmarks' servers (feeds, SMTP) run in processes of their own, so that their
CPU time is never counted in a measured phase. The helper prints one line when it
is ready (its URL), then answers each command line on stdin with one line on
stdout, and exits when stdin closes. `CommandProcess` is the parent's handle.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

STOP_WAIT = 10.0  # seconds for the helper to exit once its stdin is closed


def answer(ready: str, commands: Mapping[str, Callable[[], str]]) -> None:
    """The helper's side: print ``ready``, then answer commands until stdin closes."""
    _reply(ready)
    for line in sys.stdin:  # bounded: ends when the parent closes our stdin
        command = line.strip()
        run = commands.get(command)
        _reply(run() if run else f"error unknown command {command!r}")


def _reply(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CommandProcess:
    """The parent's handle on a helper process: a context manager.

    ``ready_prefix``: how the helper's first line must start, else it did not start.
    """

    def __init__(
        self, argv: Sequence[str], cwd: Path, *, name: str, ready_prefix: str
    ) -> None:
        self._argv = list(argv)
        self._cwd = cwd
        self._name = name
        self._ready_prefix = ready_prefix
        self._process: subprocess.Popen[str] | None = None
        self.ready = ""  # the helper's first line

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"the {self._name} is not running")
        return self._process.pid

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=self._cwd,
            text=True,
            encoding="utf-8",
        )
        try:
            self.ready = self._read_line()
        except BaseException:
            self.stop()
            raise
        if not self.ready.startswith(self._ready_prefix):
            self.stop()
            raise RuntimeError(f"the {self._name} did not start: {self.ready!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self, command: str) -> str:
        """Send one command line; the helper's one-line answer."""
        stdin, _ = self._pipes()
        stdin.write(command + "\n")
        stdin.flush()
        return self._read_line()

    def _read_line(self) -> str:
        _, stdout = self._pipes()
        line = stdout.readline()
        if not line:
            code = self._process.poll() if self._process else None
            raise RuntimeError(f"the {self._name} exited (code {code})")
        return line.strip()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError(f"the {self._name} is not running")
        return process.stdin, process.stdout

    def stop(self) -> None:
        """Close its stdin (it exits), else terminate it, else kill it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
