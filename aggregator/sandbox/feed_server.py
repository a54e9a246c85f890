"""Scripted feed server on 127.0.0.1 shared by the tests, `kairan demo` and the bench.

A stdlib ThreadingHTTPServer in a daemon thread. Each path answers with a `Route`:
a status, a body, validators (conditional GET honoured), redirects, gzip, and the
misbehaviours a poller must survive (slow headers, a slow drip, a truncated body,
a scripted sequence such as "503 then 200"). Every request is recorded for tests.

Run alone for a benchmark, serving every file of a directory::

    python -m aggregator.sandbox.feed_server --dir DIR [--latency MS] [--port P]

It prints its base URL as the first line of stdout and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate, parsedate_to_datetime
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aggregator.sandbox.service import Service

_NO_BODY = frozenset({204, 304})
_CHUNK = 16 * 1024  # chunk size of a chunked body when not dripping
_DEFAULT_TYPE = "application/octet-stream"
_CONTENT_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".html": "text/html; charset=utf-8",
    ".opml": "text/x-opml",
}


@dataclass(frozen=True, slots=True)
class Drip:
    """Send the body ``chunk`` bytes at a time, ``pause`` seconds apart."""

    chunk: int = 64
    pause: float = 0.1


@dataclass(frozen=True)
class Route:
    """How one path answers. With a ``script``, each request takes the next
    scripted Route (the last one repeats) and the other fields are unused.

    ``etag``/``last_modified`` are emitted as given; a 200 becomes a 304 when the
    request's If-None-Match (else If-Modified-Since) matches them. A Route with
    ``status=304`` answers 304 unconditionally (to script a 304's new validators).
    """

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    redirect: str | None = None  # Location; pair it with a 3xx status
    gzip: bool = False  # compress when the request accepts gzip
    delay: float = 0.0  # seconds before the status line
    drip: Drip | None = None
    truncate: bool = False  # announce more Content-Length than is sent, then close
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    script: tuple[Route, ...] = ()

    @cached_property
    def gzipped(self) -> bytes:
        """The compressed body, computed once per Route (a bomb is 50 MB of input)."""
        return gzip.compress(self.body, compresslevel=6)


_NOT_FOUND = Route(status=404, body=b"not found\n", content_type="text/plain")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # as requested, query included
    headers: tuple[tuple[str, str], ...]  # in order, as received (latin-1 decoded)
    peer: str  # the client's "address:port": one per connection

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class _State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, record: bool) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # wakes handlers sleeping in delay/drip
        self.record = record
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[RecordedRequest] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.generation = 0  # bumped by reset(), so stragglers do not count

    def begin(self, handler: BaseHTTPRequestHandler, host: str) -> _Visit:
        """Record the request, count it in flight and pick its (scripted) Route."""
        path = unquote(urlsplit(handler.path).path)
        with self.lock:
            if self.record:
                address, port = handler.client_address[:2]
                recorded = RecordedRequest(
                    handler.command,
                    handler.path,
                    tuple(handler.headers.items()),
                    f"{address}:{port}",
                )
                self.requests.append(recorded)
            now = self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.max_in_flight[host] = max(self.max_in_flight.get(host, 0), now)
            return _Visit(host, self.generation, self._pick(path))

    def _pick(self, path: str) -> Route | None:
        route = self.routes.get(path)
        if route is None or not route.script:
            return route
        hit = self.hits[path] = self.hits.get(path, 0) + 1
        return route.script[min(hit, len(route.script)) - 1]

    def end(self, visit: _Visit) -> None:
        with self.lock:
            # A request from before the last reset() is no longer counted.
            if visit.generation == self.generation:
                self.in_flight[visit.host] -= 1

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.routes.clear()
            self.hits.clear()
            self.requests.clear()
            self.in_flight.clear()
            self.max_in_flight.clear()


@dataclass(frozen=True, slots=True)
class _Visit:
    """One request between `_State.begin` and `_State.end`."""

    host: str
    generation: int
    route: Route | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in `delay` never blocks stop()
    request_queue_size = 1024  # the bench opens many connections at once

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: tuple[str, int],
    ) -> None:
        # A client that gave up (timeout and byte-cap tests) is expected; bugs are not.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real feed servers do
    disable_nagle_algorithm = True  # headers and body are two writes
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the bench read stderr."""

    def do_GET(self) -> None:
        state = self.server.state
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        visit = state.begin(self, host)
        route = visit.route or _NOT_FOUND
        try:
            state.stopping.wait(route.delay)
        finally:
            # Out of flight before the first byte goes back: the client cannot have
            # released its slot yet, so the count never overstates concurrency.
            state.end(visit)
        self._send(route)

    def _send(self, route: Route) -> None:
        status = route.status
        if status == 200 and _not_modified(route, self.headers):
            status = 304
        body = b"" if status in _NO_BODY else route.body
        compress = bool(body) and route.gzip and _accepts_gzip(self.headers)
        if compress:
            body = route.gzipped
        self.send_response(status)
        for name, value in _headers(route, compress):
            self.send_header(name, value)
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in _NO_BODY:
            length = 2 * len(body) + 1 if route.truncate else len(body)
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self._write_body(route, body)
        if route.truncate:
            self.close_connection = True

    def _write_body(self, route: Route, body: bytes) -> None:
        size = route.drip.chunk if route.drip else _CHUNK
        for index, start in enumerate(range(0, len(body), size)):
            if route.drip and index:
                self.server.state.stopping.wait(route.drip.pause)
            piece = body[start : start + size]
            if route.chunked:
                piece = b"%x\r\n%s\r\n" % (len(piece), piece)
            self.wfile.write(piece)
        if route.chunked:
            self.wfile.write(b"0\r\n\r\n")


def _headers(route: Route, compressed: bool) -> Iterator[tuple[str, str]]:
    if route.content_type:
        yield "Content-Type", route.content_type
    if route.etag is not None:
        yield "ETag", route.etag
    if route.last_modified is not None:
        yield "Last-Modified", route.last_modified
    if route.redirect is not None:
        yield "Location", route.redirect
    if compressed:
        yield "Content-Encoding", "gzip"
    if route.gzip:
        yield "Vary", "Accept-Encoding"
    yield from route.headers.items()


def _not_modified(route: Route, headers: Message) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return route.etag is not None and _etag_matches(if_none_match, route.etag)
    if_modified_since = headers.get("If-Modified-Since")
    if route.last_modified is None or if_modified_since is None:
        return False
    try:
        return parsedate_to_datetime(route.last_modified) <= parsedate_to_datetime(
            if_modified_since
        )
    except (TypeError, ValueError):
        return False  # an unparsable date is ignored (RFC 9110 §13.1.3)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires (RFC 9110 §8.8.3.2)."""

    def opaque(tag: str) -> str:
        return tag.strip().removeprefix("W/")

    wanted = opaque(etag)
    return any(
        t.strip() == "*" or opaque(t) == wanted for t in if_none_match.split(",")
    )


def _accepts_gzip(headers: Message) -> bool:
    """Whether Accept-Encoding names gzip (or ``*``) with a non-zero quality."""
    for coding in headers.get("Accept-Encoding", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return _quality(params) > 0
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


class FeedServer(Service):
    """A scripted HTTP server on 127.0.0.1: a context manager, or start()/stop()."""

    def __init__(self, port: int = 0, *, record: bool = True) -> None:
        self._address = ("127.0.0.1", port)
        self._state = _State(record)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FeedServer:
        if self._httpd is not None:
            raise RuntimeError("the feed server is already running")
        self._state.stopping.clear()
        self._httpd = _Server(self._address, self._state)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},  # how long stop() may wait for the loop
            name="kairan-feed-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down, close the socket and join the thread, whatever fails first."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        self._state.stopping.set()
        try:
            httpd.shutdown()
        finally:
            try:
                httpd.server_close()
            finally:
                thread.join()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the feed server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def route(self, path: str, route: Route) -> None:
        """Serve ``route`` at ``path`` from now on (a script starts over).

        Requests match on their decoded path; the query is recorded, not matched.
        """
        self.routes({path: route})

    def routes(self, routes: Mapping[str, Route]) -> None:
        with self._state.lock:
            for path, route in routes.items():
                self._state.routes[path] = route
                self._state.hits.pop(path, None)

    def serve_directory(self, directory: Path, latency: float = 0.0) -> list[str]:
        """Serve every file under ``directory`` at /<relative path>, conditionally.

        The ETag is a hash of the content, Last-Modified the file's mtime. Returns
        the paths, sorted.
        """
        routes = {
            "/" + file.relative_to(directory).as_posix(): _file_route(file, latency)
            for file in sorted(directory.rglob("*"))
            if file.is_file()
        }
        self.routes(routes)
        return list(routes)

    def reset(self) -> None:
        """Forget every route, recorded request and concurrency count."""
        self._state.reset()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if urlsplit(r.path).path == path]

    def max_in_flight(self, host: str = "127.0.0.1") -> int:
        """The most requests to ``host`` (the Host header's name) handled at once."""
        with self._state.lock:
            return self._state.max_in_flight.get(host.lower(), 0)


def static_route(
    body: bytes,
    content_type: str = "application/rss+xml; charset=utf-8",
    *,
    last_modified: str | None = None,
    delay: float = 0.0,
) -> Route:
    """A Route serving fixed content conditionally, with an ETag that hashes it.

    The ETag changes exactly when the body does, as a careful feed server's does.
    """
    return Route(
        body=body,
        content_type=content_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=last_modified,
        delay=delay,
    )


def _file_route(file: Path, latency: float) -> Route:
    return static_route(
        file.read_bytes(),
        _CONTENT_TYPES.get(file.suffix.lower(), _DEFAULT_TYPE),
        last_modified=formatdate(file.stat().st_mtime, usegmt=True),
        delay=latency,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.sandbox.feed_server",
        description="Serve every file of a directory on 127.0.0.1 with ETag/304.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="files to serve")
    parser.add_argument("--latency", type=float, default=0.0, help="ms before headers")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: not a directory")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the server thread starts, so only sigwait() below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with FeedServer(args.port, record=False) as server:
        server.serve_directory(args.dir, latency=args.latency / 1000)
        sys.stdout.write(server.base_url + "\n")
        sys.stdout.flush()
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
