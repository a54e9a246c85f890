"""The soak's daemon: `kairan run` in a process of its own, on an accelerated clock.

Run by `bench.soak` as ``python -m bench.soak_daemon --config C --origin ISO
--origin-mono M --speed S``. The daemon's wall time is ``origin + (monotonic() -
origin_mono) × speed``: CLOCK_MONOTONIC is one clock for every process on Linux,
so the driver computes the same daemon time without asking. Everything that reads
the injected clock (next-poll times, due times, pubDate checks, timestamps) runs
``speed`` times faster; APScheduler's ticks and every timeout stay in real seconds.
SIGTERM stops it as it stops `kairan run`.
"""

from __future__ import annotations

import argparse
import time
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_daemon")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--origin", type=datetime.fromisoformat, required=True)
    parser.add_argument("--origin-mono", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    args = parser.parse_args(argv)
    settings = config.load_settings(args.config)
    logs.setup(settings.log.level, settings.log.format)
    clock = FastClock(args.origin, args.origin_mono, args.speed)
    Daemon(args.config, settings, clock=clock).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
