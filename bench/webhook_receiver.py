"""The webhook benchmark's receiver: a minimal HTTP/1.1 server answering 204.

Run by `bench.webhooks` as ``python -m bench.webhook_receiver``, in a process of
its own, so that its CPU is never counted in a measured phase. It is deliberately
cheaper than the sandbox receiver (Starlette under uvicorn, verifying every
signature): one asyncio.Protocol per connection that splits requests by
Content-Length and answers ``204 No Content`` at once, keeping the connection
alive (RFC 9112 §9.3). Both sides of the benchmark meet the same receiver.

It answers one command on stdin, one line on stdout:

``stats``   JSON since the last ``stats`` (then started afresh): requests, distinct
            webhook-ids and a SHA-256 of them sorted, requests per path,
            connections (all, and the most at once), malformed requests, its own
            CPU seconds, and a uniform sample (reservoir, fixed seed) of up to
            ``SAMPLE`` requests: path, Standard Webhooks headers, body (base64),
            for the driver to verify with the ``standardwebhooks`` library.

It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import resource
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.commands import CommandProcess, answer

HOST = "127.0.0.1"
SAMPLE = 100  # requests kept for signature checks
MAX_HEAD = 64 * 1024  # a longer request head is malformed here
_READY = "http://127.0.0.1:"
_KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
_CLOSING = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Received:
    """One sampled request."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    """What the receiver saw; shared by every connection (one event loop)."""

    requests: int = 0
    malformed: int = 0
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    paths: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    sample: list[Received] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.requests += 1
        self.paths[path] += 1
        self.ids.add(headers.get("webhook-id", ""))
        # Algorithm R: every request is kept with probability SAMPLE / requests.
        slot = self.requests - 1
        if slot >= SAMPLE:
            slot = self.rng.randrange(self.requests)
        if slot < SAMPLE:
            kept = Received(path, {k: headers.get(k, "") for k in _KEPT_HEADERS}, body)
            if slot < len(self.sample):
                self.sample[slot] = kept
            else:
                self.sample.append(kept)

    def reset(self) -> None:
        """Count afresh; the connections still open stay counted as open."""
        fresh = Tally(open_now=self.open_now, max_open=self.open_now)
        vars(self).update(vars(fresh))  # in place: every connection holds this one

    def report(self, cpu: float) -> dict[str, Any]:
        ids = "\n".join(sorted(self.ids)).encode()
        return {
            "requests": self.requests,
            "distinct_ids": len(self.ids),
            "ids_sha256": hashlib.sha256(ids).hexdigest(),
            "paths": dict(self.paths),
            "connections": self.connections,
            "max_open": self.max_open,
            "malformed": self.malformed,
            "cpu": round(cpu, 3),
            "sample": [
                {
                    "path": r.path,
                    "headers": r.headers,
                    "body": base64.b64encode(r.body).decode("ascii"),
                }
                for r in self.sample
            ],
        }


class _Connection(asyncio.Protocol):
    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # TCP: a Transport
        tally = self._tally
        tally.connections += 1
        tally.open_now += 1
        tally.max_open = max(tally.max_open, tally.open_now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tally.open_now -= 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        # Bounded: each turn consumes one whole request from the buffer, or stops.
        while self._transport is not None and self._one_request(self._transport):
            pass

    def _one_request(self, transport: asyncio.Transport) -> bool:
        """Answer the first complete request in the buffer; False when there is none."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._refuse()
            return False
        try:
            path, headers = _head(bytes(self._buffer[:end]))
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._refuse()
            return False
        start = end + 4
        if length < 0 or len(self._buffer) < start + length:
            return False
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        self._tally.record(path, headers, body)
        if headers.get("connection", "").lower() == "close":
            transport.write(_CLOSING)
            self._close()
            return False
        transport.write(_NO_CONTENT)
        return True

    def _refuse(self) -> None:
        self._tally.malformed += 1
        if self._transport is not None:
            self._transport.write(_BAD)
        self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None


def _head(head: bytes) -> tuple[str, dict[str, str]]:
    """The request's path and its headers (lower-case names); ValueError if bad."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ")
    if method != "POST" or not version.startswith("HTTP/1."):
        raise ValueError(lines[0])
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(line)
        headers[name.strip().lower()] = value.strip()
    return path, headers


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve() -> None:
    """Serve on an event loop in a thread; answer commands on this one."""
    loop = asyncio.new_event_loop()
    tally = Tally()
    server = loop.run_until_complete(
        loop.create_server(lambda: _Connection(tally), HOST, 0)
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    since = _cpu()

    async def take() -> dict[str, Any]:
        # On the loop's thread, between two callbacks: no request is half-counted.
        nonlocal since
        now = _cpu()
        figures = tally.report(now - since)
        tally.reset()
        since = now
        return figures

    def stats() -> str:
        return json.dumps(asyncio.run_coroutine_threadsafe(take(), loop).result())

    try:
        answer(f"{_READY}{port}", {"stats": stats})
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """What the receiver saw during one phase."""

    requests: int
    distinct_ids: int
    ids_sha256: str
    paths: dict[str, int]
    connections: int
    max_open: int
    malformed: int
    cpu: float
    sample: list[dict[str, Any]]

    def summary(self) -> dict[str, object]:
        """Every count, without the sample (for --json)."""
        return {k: v for k, v in asdict(self).items() if k != "sample"}


class ReceiverProcess(CommandProcess):
    """The parent's handle on ``python -m bench.webhook_receiver``."""

    def __init__(self, cwd: Path) -> None:
        argv = [sys.executable, "-m", "bench.webhook_receiver"]
        super().__init__(argv, cwd, name="webhook receiver", ready_prefix=_READY)

    @property
    def url(self) -> str:
        return self.ready

    def stats(self) -> ReceiverStats:
        """The receiver's counts since the last call (and start counting afresh)."""
        return ReceiverStats(**json.loads(self.command("stats")))


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.webhook_receiver").parse_args(argv)
    serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
