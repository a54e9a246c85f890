"""The benchmark's feed server: the sandbox FeedServer in a process of its own.

Run by `bench.poll` as ``python -m bench.server --dir DIR --latency MS``. Unlike
``python -m aggregator.sandbox.feed_server`` it records requests and takes commands
on stdin, one a line, each answered by one line on stdout:

``stats``   JSON counts of the requests since the last ``stats`` (then forgotten)
``reload``  serve the directory's files again (after the bench rewrote some)

It exits when stdin closes (or on SIGTERM). Its CPU time is its own process's, so
none of it is counted in the phases the bench measures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from email.utils import formatdate
from pathlib import Path

from aggregator.sandbox.feed_server import (
    FeedServer,
    RecordedRequest,
    Route,
    static_route,
)
from bench.commands import CommandProcess, answer

_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the server saw during one phase."""

    requests: int
    conditional: int  # requests with If-None-Match
    not_modified: int  # ... whose ETag matched: answered 304
    paths: int  # distinct paths requested
    max_in_flight: int  # the most requests handled at once


def load_routes(directory: Path, latency: float) -> dict[str, Route]:
    """Every file under ``directory`` at /<relative path>, with a content-hash ETag."""
    return {
        "/" + file.relative_to(directory).as_posix(): static_route(
            file.read_bytes(),
            last_modified=formatdate(file.stat().st_mtime, usegmt=True),
            delay=latency,
        )
        for file in sorted(directory.rglob("*"))
        if file.is_file()
    }


def _answered_304(request: RecordedRequest, routes: Mapping[str, Route]) -> bool:
    """The sandbox's rule for a file route: a 304 exactly when If-None-Match matches."""
    sent = request.header("If-None-Match")
    route = routes.get(request.path.partition("?")[0])
    return sent is not None and route is not None and sent.strip() == route.etag


def count(
    server: FeedServer, routes: Mapping[str, Route], max_in_flight: int
) -> ServerStats:
    requests = server.requests
    return ServerStats(
        requests=len(requests),
        conditional=sum(r.header("If-None-Match") is not None for r in requests),
        not_modified=sum(_answered_304(r, routes) for r in requests),
        paths=len({r.path for r in requests}),
        max_in_flight=max_in_flight,
    )


def _restart_counts(server: FeedServer, routes: Mapping[str, Route]) -> None:
    # reset() forgets the routes too; only called between phases, when idle
    server.reset()
    server.routes(routes)


def serve(directory: Path, latency: float) -> None:
    routes = load_routes(directory, latency)
    with FeedServer(record=True) as server:
        server.routes(routes)

        def stats() -> str:
            counted = count(server, routes, server.max_in_flight(_HOST))
            _restart_counts(server, routes)
            return json.dumps(asdict(counted))

        def reload() -> str:
            nonlocal routes
            routes = load_routes(directory, latency)
            _restart_counts(server, routes)
            return f"ok {len(routes)}"

        answer(server.base_url, {"stats": stats, "reload": reload})


class ServerProcess(CommandProcess):
    """The parent's handle on ``python -m bench.server``: a context manager."""

    def __init__(self, directory: Path, latency_ms: float, cwd: Path) -> None:
        argv = [sys.executable, "-m", "bench.server", "--dir", str(directory)]
        argv += ["--latency", str(latency_ms)]
        super().__init__(argv, cwd, name="feed server", ready_prefix=f"http://{_HOST}:")

    @property
    def base_url(self) -> str:
        return self.ready

    def stats(self) -> ServerStats:
        """The server's counts since the last call (and start counting afresh)."""
        return ServerStats(**json.loads(self.command("stats")))

    def reload(self) -> None:
        """Serve the directory's current files (their ETags follow the new bodies)."""
        reply = self.command("reload")
        if not reply.startswith("ok"):
            raise RuntimeError(f"the feed server could not reload: {reply}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--dir", type=Path, required=True, help="files to serve")
    parser.add_argument("--latency", type=float, default=0.0, help="ms before headers")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: not a directory")
    serve(args.dir, args.latency / 1000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
