"""The publish benchmark's HTTP server: Kairan's, or the minimal Starlette floor.

Run by `bench.publish`, in a process of its own::

    python -m bench.publish_server kairan --config FILE
    python -m bench.publish_server floor --feed FILE

``kairan`` serves the published files as the daemon does:
``aggregator.server.Server(build_app(rt), "127.0.0.1", 0)``. ``floor`` serves
one route through the same Server (uvicorn): a Starlette app that returns the
feed's bytes from memory in a plain Response, with a 304 when If-None-Match is
the one ETag it knows. Either prints its URL on a line of stdout and serves
until SIGTERM, so the parent can read its CPU from os.wait4.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aggregator import logs, runtime
from aggregator.cli.serve import serve_until_signalled
from aggregator.server import Server, build_app

ATOM = "application/atom+xml; charset=utf-8"


def floor_app(body: bytes) -> Starlette:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def feed(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type=ATOM, headers={"ETag": etag})

    return Starlette(routes=[Route("/feed.atom", feed)])


def serve(server: Server) -> None:
    print(server.url, flush=True)
    asyncio.run(serve_until_signalled(server))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_server")
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("kairan").add_argument("--config", type=Path, required=True)
    kinds.add_parser("floor").add_argument("--feed", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind == "floor":
        serve(Server(floor_app(args.feed.read_bytes()), "127.0.0.1", 0))
        return 0
    settings = runtime.load(args.config)
    logs.setup("warning", settings.log.format)
    with runtime.open_runtime(settings, create=False) as rt:
        serve(Server(build_app(rt), "127.0.0.1", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
