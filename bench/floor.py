"""The floors `kairan poll` is measured against: the same GETs, done simply.

Run by `bench.poll`, one process per floor, so that its CPU time and peak RSS are
its own::

    python -m bench.floor httpx|aiohttp --urls FILE --concurrency C
                          [--save-etags FILE | --etags FILE] [--clients K]

One client (httpx.AsyncClient or aiohttp.ClientSession), at most C requests at a
time, each body parsed as soon as it arrives by feedparser at its fastest
(``sanitize_html=False, resolve_relative_uris=False``, the settings Kairan uses).
With ``--etags`` every request is conditional (If-None-Match) and nothing is
parsed: the floor of a warm poll. Prints one JSON object of counts on stdout.

``--clients K`` (httpx) spreads the requests over K AsyncClients of C/K
connections each: httpcore's pool scans its connections and queued requests on
every request and response, so its CPU cost grows faster than linearly with the
connections in one pool; K small pools show how much of the httpx floor that is.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import feedparser
import httpx

_TIMEOUT = 120.0  # seconds: generous, a floor never times out at these latencies


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    etag: str | None


# One GET: (url, request headers) -> Reply.
Get = Callable[[str, dict[str, str]], Awaitable[Reply]]


@dataclass
class Tally:
    """What one floor run did, printed as JSON for `bench.poll`."""

    mode: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    parsed: int = 0
    entries: int = 0
    bytes: int = 0
    etags: dict[str, str] = field(default_factory=dict)

    def add(self, url: str, reply: Reply) -> None:
        self.requests += 1
        self.statuses[reply.status] += 1
        self.bytes += len(reply.body)
        if reply.etag is not None:
            self.etags[url] = reply.etag
        if reply.status == 200:
            self.entries += parse_fastest(reply.body)
            self.parsed += 1

    def summary(self) -> dict[str, object]:
        counts = asdict(self)
        counts["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        del counts["etags"]
        return counts


def parse_fastest(body: bytes) -> int:
    """feedparser without its sanitiser and URI resolver; the number of entries.

    A BytesIO, as Kairan passes it: given bytes, feedparser may try them as a path.
    """
    result = feedparser.parse(
        io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False
    )
    return len(result["entries"])


@dataclass(frozen=True, slots=True)
class Options:
    urls: Sequence[str]
    etags: dict[str, str]  # empty: unconditional GETs
    limit: int  # requests in flight
    clients: int  # httpx clients sharing them


async def run_all(get: Get, options: Options, tally: Tally) -> None:
    """GET every URL, at most ``limit`` at once (one semaphore, like HostLimits)."""
    semaphore = asyncio.Semaphore(options.limit)
    etags = options.etags

    async def one(url: str) -> None:
        headers = {"If-None-Match": etags[url]} if url in etags else {}
        async with semaphore:
            reply = await get(url, headers)
        tally.add(url, reply)

    await asyncio.gather(*(one(url) for url in options.urls))


async def with_httpx(options: Options, tally: Tally) -> None:
    size = math.ceil(options.limit / options.clients)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(trust_env=False, timeout=_TIMEOUT, limits=limits)
            )
            for _ in range(options.clients)
        ]
        turns = itertools.cycle(clients)

        async def get(url: str, headers: dict[str, str]) -> Reply:
            response = await next(turns).get(url, headers=headers)
            return Reply(
                response.status_code, response.content, response.headers.get("etag")
            )

        await run_all(get, options, tally)


async def with_aiohttp(options: Options, tally: Tally) -> None:
    # Imported here: aiohttp comes with the `bench` extra only, and the httpx floor
    # must run without it. Untyped when absent (mypy in a venv without the extra).
    import aiohttp  # type: ignore[import-not-found, unused-ignore]

    connector = aiohttp.TCPConnector(limit=options.limit)
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def get(url: str, headers: dict[str, str]) -> Reply:
            async with session.get(url, headers=headers) as response:
                body: bytes = await response.read()
                status: int = response.status
                etag: str | None = response.headers.get("ETag")
            return Reply(status, body, etag)

        await run_all(get, options, tally)


_MODES = {"httpx": with_httpx, "aiohttp": with_aiohttp}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("mode", choices=sorted(_MODES))
    parser.add_argument("--urls", type=Path, required=True, help="one URL a line")
    parser.add_argument("--concurrency", type=int, default=50)
    conditional = parser.add_mutually_exclusive_group()
    conditional.add_argument("--etags", type=Path, help="send these (JSON url→etag)")
    conditional.add_argument("--save-etags", type=Path, help="write the ETags got")
    parser.add_argument("--clients", type=int, default=1, help="httpx clients")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or not 1 <= args.clients <= args.concurrency:
        parser.error("need 1 <= --clients <= --concurrency")
    if args.clients > 1 and args.mode != "httpx":
        parser.error("--clients is for httpx")
    etags: dict[str, str] = {}
    if args.etags is not None:
        etags = json.loads(args.etags.read_text(encoding="utf-8"))
    urls = args.urls.read_text(encoding="utf-8").split()
    tally = Tally(args.mode)
    options = Options(urls, etags, args.concurrency, args.clients)
    asyncio.run(_MODES[args.mode](options, tally))
    if args.save_etags is not None:
        args.save_etags.write_text(json.dumps(tally.etags), encoding="utf-8")
    json.dump(tally.summary(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
