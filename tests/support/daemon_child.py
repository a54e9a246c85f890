"""Run aggregator.daemon.Daemon in a child process on a clock the test controls.

``python -m tests.support.daemon_child --config PATH --start ISO --origin SECONDS
[--speed N] [--skip-file PATH] [--fsize-file PATH]`` runs the daemon exactly as
`kairan run` does (signal handlers included: SIGTERM stops it, SIGKILL kills it),
with two differences a crash or disk test needs:

- The clock (`ChildClock`) runs ``speed`` times faster than real time from
  ``start`` at monotonic ``origin``, plus the seconds written in ``skip_file``.
  CLOCK_MONOTONIC is system-wide, so the test and every child it starts agree on
  the time: leases and poll intervals (≥ 300 s) pass in a second or two.
- ``fsize_file`` holds a soft RLIMIT_FSIZE in bytes, applied before the database
  is opened and again whenever the file changes: a write past it fails with EFBIG
  (Python ignores SIGXFSZ), which SQLite reports as a full disk or an I/O error.
  Raising the number is space returning.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from aggregator import config, logs
from aggregator.clock import SystemClock
from aggregator.daemon import Daemon
from aggregator.errors import KairanError

LIMIT_CHECK = 0.05  # seconds between reads of the fsize file
LIMIT_CHECKS = 20 * 60 * 20  # twenty minutes of them: longer than any test


@dataclass(frozen=True)
class ChildClock:
    """``start`` at monotonic ``origin``, ``speed``× real time, plus ``skip_file``."""

    start: datetime
    origin: float
    speed: float = 1.0
    skip_file: Path | None = None

    def now(self) -> datetime:
        elapsed = (SystemClock().monotonic() - self.origin) * self.speed
        return self.start + timedelta(seconds=elapsed + self.skipped())

    def monotonic(self) -> float:
        # Durations (timeouts, metrics) stay real: only the calendar is ours.
        return SystemClock().monotonic()

    def skipped(self) -> float:
        """The seconds the test has jumped the clock forward so far."""
        if self.skip_file is None:
            return 0.0
        try:
            text = self.skip_file.read_text("ascii").strip()
        except FileNotFoundError:
            return 0.0
        # A test rewrites the file in place; a read caught half-way sees "".
        return float(text) if text else 0.0

    def skip(self, seconds: float) -> None:
        """Jump forward (the test's side): every process reads the new total."""
        if self.skip_file is None:
            raise ValueError("this clock has no skip file")
        temporary = self.skip_file.with_suffix(".tmp")
        temporary.write_text(f"{self.skipped() + seconds}\n", "ascii")
        temporary.replace(self.skip_file)  # atomic: a reader never sees half

    def arguments(self) -> list[str]:
        args = ["--start", self.start.isoformat(), "--origin", repr(self.origin)]
        args += ["--speed", repr(self.speed)]
        if self.skip_file is not None:
            args += ["--skip-file", str(self.skip_file)]
        return args


def spawn(
    config_path: Path,
    clock: ChildClock,
    stderr: int | IO[bytes],
    *,
    fsize_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the daemon in a child of this interpreter, logging to ``stderr``."""
    command = [sys.executable, "-m", "tests.support.daemon_child"]
    command += ["--config", str(config_path), *clock.arguments()]
    if fsize_file is not None:
        command += ["--fsize-file", str(fsize_file)]
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def free_port() -> int:
    """A port free now on 127.0.0.1, for the daemon's HTTP server (config.toml)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def apply_limit(path: Path) -> int:
    """Set the soft RLIMIT_FSIZE to the number in ``path``; returns it."""
    limit = int(path.read_text("ascii").strip())
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    return limit


def follow_limit(path: Path, current: int) -> None:
    """Re-apply the limit whenever the test changes it (a daemon thread's body)."""
    pause = threading.Event()
    for _ in range(LIMIT_CHECKS):
        pause.wait(LIMIT_CHECK)
        try:
            wanted = int(path.read_text("ascii").strip())
        except ValueError:  # caught half-written: read it again next time
            continue
        if wanted != current:
            current = apply_limit(path)
            logs.get("daemon_child").warning(
                "child.fsize_limit", extra=logs.fields(bytes=current)
            )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="daemon_child")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--origin", type=float, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--skip-file", type=Path)
    parser.add_argument("--fsize-file", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.fsize_file is not None:
        limit = apply_limit(args.fsize_file)
        threading.Thread(
            target=follow_limit, args=(args.fsize_file, limit), daemon=True
        ).start()
    clock = ChildClock(args.start, args.origin, args.speed, args.skip_file)
    try:
        settings = config.load_settings(args.config)
        logs.setup(settings.log.level, settings.log.format)
        Daemon(args.config, settings, clock=clock).run()
    except KairanError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
