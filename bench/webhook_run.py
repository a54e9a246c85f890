"""The webhook benchmark's measured phases: a delivery pass, or its raw httpx floor.

Run by `bench.webhooks`, in a process of its own::

    python -m bench.webhook_run pass --config FILE --now ISO-8601
    python -m bench.webhook_run floor --jobs FILE --concurrency C --user-agent UA

``pass`` opens the runtime with the clock at ``--now`` (when the deliveries are
due) and runs ``DeliveryPass.run(channel="webhook")`` once, through
``Runtime.delivery_pass()`` and the real WebhookTransport: the due query, the
claim, the published ids, each body built and fixed in the claim's transaction,
one signed POST per delivery and the outcomes' commit.

``floor`` reads the jobs (URL, webhook-id, body, secrets: what the pass sent,
read back from its batches) into memory, then POSTs each body with one plain
``httpx.AsyncClient``, signed at send time by the same
``notifiers.webhook.request_headers``, from C workers that each take the next
job once their previous POST was answered.

Both print one JSON object: wall and CPU seconds of that work alone (start-up,
imports and opening the database excluded) and this process's own peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from aggregator import logs, runtime
from aggregator.clock import Clock, SystemClock
from aggregator.runtime import Runtime
from bench.child import own_peak_rss_kb
from bench.digest_pass import BenchClock, PassFigures, figures
from notifiers.webhook import request_headers

TIMEOUT = 15.0  # seconds per POST: webhooks.timeout's default, as the pass has it


# --- the pass -----------------------------------------------------------------------


async def measure_pass(rt: Runtime) -> PassFigures:
    async with rt.delivery_pass() as delivery:
        rss_before = own_peak_rss_kb()
        wall, cpu = time.perf_counter(), time.process_time()
        report = await delivery.run(channel="webhook")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return figures(report, wall, cpu, rss_before)


def run_pass(args: argparse.Namespace) -> dict[str, Any]:
    settings = runtime.load(args.config)
    # As `kairan deliver` runs: routine log lines are kept off (cli/context.py).
    logs.setup("warning", settings.log.format)
    with runtime.open_runtime(settings, clock=BenchClock(args.now), create=False) as rt:
        return asdict(asyncio.run(measure_pass(rt)))


# --- the floor ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One POST: a delivery as the pass sent it."""

    url: str
    webhook_id: str
    body: bytes
    secrets: tuple[str, ...]

    def line(self) -> str:
        """The job as one JSON line of a jobs file."""
        return json.dumps(
            {
                "url": self.url,
                "id": self.webhook_id,
                "body": base64.b64encode(self.body).decode("ascii"),
                "secrets": list(self.secrets),
            }
        )

    @classmethod
    def of(cls, line: str) -> Job:
        item = json.loads(line)
        return cls(
            item["url"],
            item["id"],
            base64.b64decode(item["body"]),
            tuple(item["secrets"]),
        )


@dataclass(frozen=True, slots=True)
class FloorFigures:
    wall: float  # seconds from the first POST to the last answer
    cpu: float  # this process's CPU seconds (user + system) in that time
    sent: int  # answered 2xx
    refused: int  # answered anything else
    rss_kb: int  # this process's own peak RSS (VmHWM)


async def post_all(
    jobs: Sequence[Job], user_agent: str, workers: int, wall_clock: Clock
) -> FloorFigures:
    turns = iter(jobs)  # shared: each worker takes the next job
    async with httpx.AsyncClient(trust_env=False, timeout=TIMEOUT) as client:
        wall, cpu = time.perf_counter(), time.process_time()
        counts = await asyncio.gather(
            *(_work(client, turns, user_agent, wall_clock) for _ in range(workers))
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = sum(counts)
    return FloorFigures(
        wall=round(wall, 3),
        cpu=round(cpu, 3),
        sent=sent,
        refused=len(jobs) - sent,
        rss_kb=own_peak_rss_kb(),
    )


async def _work(
    client: httpx.AsyncClient, turns: Iterator[Job], user_agent: str, clock: Clock
) -> int:
    """One worker: POST the next job until none is left."""
    sent = 0
    for job in turns:  # bounded: the shared iterator runs out
        headers = request_headers(
            job.webhook_id, clock.now(), job.body, job.secrets, user_agent
        )
        response = await client.post(job.url, content=job.body, headers=headers)
        sent += 200 <= response.status_code < 300
    return sent


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    with args.jobs.open(encoding="utf-8") as lines:
        jobs = [Job.of(line) for line in lines]
    figures = post_all(jobs, args.user_agent, args.concurrency, SystemClock())
    return asdict(asyncio.run(figures))


# --- entry point --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_run")
    modes = parser.add_subparsers(dest="mode", required=True)
    measured = modes.add_parser("pass", help="DeliveryPass.run(channel='webhook')")
    measured.add_argument("--config", type=Path, required=True)
    measured.add_argument("--now", type=datetime.fromisoformat, required=True)
    floor = modes.add_parser("floor", help="the same POSTs with a raw httpx client")
    floor.add_argument("--jobs", type=Path, required=True, help="one JSON a line")
    floor.add_argument("--concurrency", type=int, default=10)
    floor.add_argument("--user-agent", required=True)
    args = parser.parse_args(argv)
    if args.mode == "pass" and args.now.tzinfo is None:
        parser.error("--now needs a UTC offset")
    if args.mode == "floor" and args.concurrency < 1:
        parser.error("need --concurrency >= 1")
    result = run_pass(args) if args.mode == "pass" else run_floor(args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
