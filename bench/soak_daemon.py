"""The soak's daemon: `kairan run` in a process of its own, on an accelerated clock.

Run by `bench.soak` as ``python -m bench.soak_daemon --config C --origin ISO
--origin-mono M --speed S``. The daemon's wall time is ``origin + (monotonic() -
origin_mono) × speed``: CLOCK_MONOTONIC is one clock for every process on Linux,
so the driver computes the same daemon time without asking. Everything that reads
the injected clock (next-poll times, due times, pubDate checks, timestamps) runs
``speed`` times faster; APScheduler's ticks and every timeout stay in real seconds.
SIGTERM stops it as it stops `kairan run`.

With ``--tracemalloc`` it traces allocations (one frame; slower, and RSS counts
the traces too): the first SIGUSR1 takes the baseline snapshot, each later one
and the exit print the top 20 growths since, by line, to stderr (the log).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from aggregator import config, logs
from aggregator.daemon import Daemon


@dataclass(frozen=True, slots=True)
class FastClock:
    """A Clock whose wall time runs ``speed`` times faster than real time."""

    origin: datetime  # the daemon's time when the real monotonic clock read origin_mono
    origin_mono: float
    speed: float

    def at(self, mono: float) -> datetime:
        """The daemon's time when the real monotonic clock reads ``mono``."""
        return self.origin + timedelta(seconds=(mono - self.origin_mono) * self.speed)

    def mono_at(self, when: datetime) -> float:
        """The real monotonic reading at which the daemon's time is ``when``."""
        return self.origin_mono + (when - self.origin).total_seconds() / self.speed

    def now(self) -> datetime:
        return self.at(time.monotonic())

    def monotonic(self) -> float:
        # durations (fetch and parse times) are measured in real seconds
        return time.monotonic()


TOP = 20
MARK = "tracemalloc:"  # the first word of each dump line (the driver collects them)


@dataclass
class Tracer:
    """tracemalloc's growth since a baseline, dumped on request."""

    baseline: tracemalloc.Snapshot | None = None

    def start(self) -> None:
        tracemalloc.start(1)  # one frame: 10 made a poll cycle 7× slower
        signal.signal(signal.SIGUSR1, lambda _number, _frame: self.look("SIGUSR1"))

    def look(self, why: str) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),)
        )
        if self.baseline is None:
            self.baseline = snapshot
            total = sum(s.size for s in snapshot.statistics("filename"))
            self._print(f"{why}: baseline, {total / 2**20:.1f} MiB traced")
            return
        stats = snapshot.compare_to(self.baseline, "lineno")
        grown = sum(s.size_diff for s in stats)
        self._print(f"{why}: {grown / 2**20:+.1f} MiB traced since the baseline")
        for stat in stats[:TOP]:
            frame = stat.traceback[0]
            self._print(
                f"{stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks"
                f"  {frame.filename}:{frame.lineno}"
            )

    @staticmethod
    def _print(text: str) -> None:
        print(f"{MARK} {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_daemon")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--origin", type=datetime.fromisoformat, required=True)
    parser.add_argument("--origin-mono", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    tracer = Tracer() if args.tracemalloc else None
    if tracer is not None:
        tracer.start()
    settings = config.load_settings(args.config)
    logs.setup(settings.log.level, settings.log.format)
    clock = FastClock(args.origin, args.origin_mono, args.speed)
    try:
        Daemon(args.config, settings, clock=clock).run()
    finally:
        if tracer is not None:
            tracer.look("exit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
