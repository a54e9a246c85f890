"""The digest benchmark's measured phase: one delivery pass, timed from inside.

Run by `bench.digest`, in a process of its own::

    python -m bench.digest_pass --config FILE --now ISO-8601

Opens the runtime on an existing data directory with the clock stopped at
``--now`` (when the digests are due), runs ``DeliveryPass.run()`` once over the
e-mail channel through the real SmtpTransport, and prints one JSON object: the
wall and CPU seconds of ``run()`` alone (claim, load, render, build, SMTP and
the outcome commits; not the interpreter's start-up, imports or opening the
database), its outcomes, and this process's own peak RSS (VmHWM) before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from aggregator import logs, runtime
from aggregator.deliver import DeliveryReport
from aggregator.runtime import Runtime
from bench.child import own_peak_rss_kb

ERRORS_SHOWN = 3  # failed or retried messages quoted in the output


class BenchClock:
    """The bench's clock: the time is whatever the bench sets; durations are real."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class PassFigures:
    """What one measured pass did, as `bench.digest` reads it back."""

    wall: float  # seconds of run()
    cpu: float  # this process's CPU seconds (user + system) during run()
    sent: int
    retry: int
    failed: int
    errors: tuple[str, ...]  # the first few errors, if any
    rss_before_kb: int  # peak RSS (VmHWM) once the runtime is open, before run()
    rss_kb: int  # peak RSS after run(): this process's peak


async def measure(rt: Runtime) -> PassFigures:
    async with rt.delivery_pass() as delivery:
        rss_before = own_peak_rss_kb()
        wall, cpu = time.perf_counter(), time.process_time()
        report = await delivery.run(channel="email")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return figures(report, wall, cpu, rss_before)


def figures(
    report: DeliveryReport, wall: float, cpu: float, rss_before_kb: int
) -> PassFigures:
    errors = tuple(
        f"{r.address}: {r.outcome}: {r.error}" for r in report.results if r.error
    )
    return PassFigures(
        wall=round(wall, 3),
        cpu=round(cpu, 3),
        sent=report.count("sent"),
        retry=report.count("retry"),
        failed=report.count("failed"),
        errors=errors[:ERRORS_SHOWN],
        rss_before_kb=rss_before_kb,
        rss_kb=own_peak_rss_kb(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.digest_pass")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--now", type=datetime.fromisoformat, required=True)
    args = parser.parse_args(argv)
    if args.now.tzinfo is None:
        parser.error("--now needs a UTC offset")
    settings = runtime.load(args.config)
    # As `kairan deliver` runs: routine log lines are kept off (cli/context.py).
    logs.setup("warning", settings.log.format)
    with runtime.open_runtime(settings, clock=BenchClock(args.now), create=False) as rt:
        result = asyncio.run(measure(rt))
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
