"""The floor the digest pass is measured against: the same mail, pre-rendered.

Run by `bench.digest`, in a process of its own::

    python -m bench.smtp_floor --message FILE --recipients FILE --port P
                               [--concurrency C] [--sender ADDRESS]

Sends the bytes of ``--message`` (one real digest, rendered once) to every
address in ``--recipients`` (one a line, one message each: the envelope
recipient varies, the bytes do not) with raw aiosmtplib over ``C`` persistent
connections to 127.0.0.1:P, each worker taking the next recipient as soon as its
previous message was accepted. Prints one JSON object: the wall and CPU seconds
of connecting and sending (not the interpreter's start-up, imports or QUIT), the
messages accepted, and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiosmtplib

from bench.child import own_peak_rss_kb

HOST = "127.0.0.1"
TIMEOUT = 60.0  # seconds per SMTP command: generous, the sink is local


@dataclass(frozen=True, slots=True)
class FloorFigures:
    wall: float  # seconds from the first connect to the last reply
    cpu: float  # this process's CPU seconds (user + system) in that time
    sent: int  # messages accepted for their recipient
    refused: int  # recipients refused
    rss_kb: int  # this process's own peak RSS (VmHWM)


async def send_all(
    message: bytes, sender: str, recipients: Sequence[str], port: int, workers: int
) -> FloorFigures:
    turns = iter(recipients)  # shared: each worker takes the next recipient
    wall, cpu = time.perf_counter(), time.process_time()
    clients = [
        aiosmtplib.SMTP(hostname=HOST, port=port, timeout=TIMEOUT)
        for _ in range(workers)
    ]
    counts = await asyncio.gather(*(_work(c, message, sender, turns) for c in clients))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await asyncio.gather(*(c.quit() for c in clients))
    sent = sum(counts)
    return FloorFigures(
        wall=round(wall, 3),
        cpu=round(cpu, 3),
        sent=sent,
        refused=len(recipients) - sent,
        rss_kb=own_peak_rss_kb(),
    )


async def _work(
    client: aiosmtplib.SMTP, message: bytes, sender: str, turns: Iterator[str]
) -> int:
    """One connection: send to the next recipient until none is left."""
    await client.connect()
    sent = 0
    for recipient in turns:  # bounded: the shared iterator runs out
        refused, _ = await client.sendmail(sender, [recipient], message)
        sent += not refused
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_floor")
    parser.add_argument("--message", type=Path, required=True, help="the bytes")
    parser.add_argument("--recipients", type=Path, required=True, help="one a line")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=4, help="connections")
    parser.add_argument("--sender", default="kairan@example.jp")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("need --concurrency >= 1")
    message = args.message.read_bytes()
    recipients = args.recipients.read_text(encoding="utf-8").split()
    result = asyncio.run(
        send_all(message, args.sender, recipients, args.port, args.concurrency)
    )
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
