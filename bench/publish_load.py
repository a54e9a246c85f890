"""The publish benchmark's load generator: GET one URL from C clients for D seconds.

Run by `bench.publish`, in a process of its own::

    python -m bench.publish_load --url URL --clients 20 --seconds 5 [--conditional]

Each of the C workers has an ``httpx.AsyncClient`` of its own with one
keep-alive connection (one client of many connections costs httpcore a scan of
its pool per request: bench/README.md, polling), and sends its next GET as soon
as the previous response is read. ``--conditional`` first fetches the URL once
for its ETag and sends it as If-None-Match. Every request asks for
Accept-Encoding: identity (the floor does not compress). Prints one JSON object:
requests, status counts, body bytes, seconds and requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence

import httpx


async def worker(
    url: str, headers: dict[str, str], deadline: float, statuses: Counter[int]
) -> int:
    """GET until the deadline; the body bytes received."""
    received = 0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        while time.perf_counter() < deadline:
            response = await client.get(url, headers=headers)
            statuses[response.status_code] += 1
            received += len(response.content)
    return received


async def load(args: argparse.Namespace) -> dict[str, object]:
    # identity: httpx asks for gzip by default, and the floor does not compress
    headers = {"Accept-Encoding": "identity"}
    if args.conditional:
        async with httpx.AsyncClient() as client:
            first = await client.get(args.url, headers=headers)
            etag = first.headers.get("etag")
        if etag is None:
            return {"error": "no ETag on the first response"}
        headers["If-None-Match"] = etag
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    deadline = started + args.seconds
    tasks = [worker(args.url, headers, deadline, statuses) for _ in range(args.clients)]
    received = sum(await asyncio.gather(*tasks))
    elapsed = time.perf_counter() - started
    requests = sum(statuses.values())
    return {
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "bytes": received,
        "seconds": round(elapsed, 3),
        "rps": round(requests / elapsed, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conditional", action="store_true")
    args = parser.parse_args(argv)
    json.dump(asyncio.run(load(args)), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
