"""Scripted webhook receiver on 127.0.0.1 shared by tests, `kairan demo` and the bench.

An ASGI app served by uvicorn (`aggregator.server.Server`) on its own event loop in
a daemon thread. It takes a POST on any path, verifies its Standard Webhooks
signature with the official ``standardwebhooks`` library against each of its
secrets (several during a rotation), answers 200, or 401 when none verifies, and
records every request as a `WebhookRequest`. With ``json_dir`` each accepted body
is also written as ``<webhook-id>.json``: a redelivery, which keeps its id,
overwrites its file, as a deduplicating receiver would.

Scripts, thread-safe and taken one per POST in the order given, make it misbehave
the way real receivers do: a status (500, 410, 429 with Retry-After), a redirect,
a huge response body, a late answer. hold() keeps every answer back until
release(), after the request was recorded: the receiver has it, the sender is
unsure (crash tests).

Run alone for a demo or a benchmark::

    python -m aggregator.sandbox.webhook_receiver --secret whsec_… [--port P]
        [--json-dir DIR]

It prints its URL as the first line of stdout, then one line per request, and
stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aggregator.sandbox.service import Service
from aggregator.sandbox.smtp_sink import _write_atomically
from aggregator.server import Server

_HOST = "127.0.0.1"
MAX_BODY = 1024 * 1024  # larger request bodies are refused with 413, unread
_HOLD_LIMIT = 30.0  # seconds a held answer waits at most
_POLL = 0.01
_ZEROS = bytes(64 * 1024)  # one chunk of a huge body, reused: nothing accumulates
# A file name that stays inside json_dir; other ids are hashed (see _json_name).
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One request as received and how the receiver answered it."""

    path: str  # as requested, query included
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes  # empty when refused unread (405, 413)
    webhook_id: str | None
    verified: bool  # the signature checked out with one of the receiver's secrets
    status: int  # what the receiver answered
    error: str | None  # why verification failed, if it did


@dataclass(frozen=True, slots=True)
class _Answer:
    """A scripted answer, given whatever the signature says."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class _Huge:
    """A scripted 200 with ``size`` bytes of body."""

    size: int


@dataclass(frozen=True, slots=True)
class _Delay:
    """Answer as usual, ``seconds`` late."""

    seconds: float


_Script = _Answer | _Huge | _Delay


class _State:
    """Everything the test thread and the receiver's loop share, behind one lock."""

    def __init__(
        self,
        json_dir: Path | None,
        on_request: Callable[[WebhookRequest], None] | None,
    ) -> None:
        self.changed = threading.Condition()
        self.stopping = threading.Event()  # wakes answers waiting in delay or hold
        self.json_dir = json_dir
        self.on_request = on_request
        self.requests: list[WebhookRequest] = []
        self.scripts: deque[_Script] = deque()
        self.holding = False
        self.generation = 0  # bumped by reset(), so stragglers are not recorded

    def add_scripts(self, script: _Script, count: int) -> None:
        with self.changed:
            self.scripts.extend([script] * count)

    def take_script(self) -> _Script | None:
        with self.changed:
            return self.scripts.popleft() if self.scripts else None

    def record(self, request: WebhookRequest, generation: int) -> None:
        """Record a request; its .json file exists before any waiter can see it."""
        if generation != self.generation:
            return
        if self.json_dir is not None and _accepted(request):
            _write_json(self.json_dir, request)
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()
        if self.on_request is not None:
            self.on_request(request)

    def held(self) -> bool:
        with self.changed:
            return self.holding and not self.stopping.is_set()

    def reset(self) -> None:
        with self.changed:
            self.generation += 1
            self.requests.clear()
            self.scripts.clear()
            self.holding = False


class _App:
    """The ASGI app: every path, one answer per request as the scripts say."""

    def __init__(self, state: _State, secrets: Callable[[], list[str]]) -> None:
        self._state = state
        self._secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        state = self._state
        generation = state.generation
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = _joined_headers(request)
        if request.method != "POST":
            # RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
            refusal = PlainTextResponse("POST only\n", 405, {"Allow": "POST"})
            return self._refuse(path, headers, refusal, "method not allowed")
        body = await _read_body(request)
        if body is None:
            refusal = PlainTextResponse("body larger than 1 MiB\n", 413)
            return self._refuse(path, headers, refusal, "body too large")
        error = _verify(body, headers, self._secrets())
        script = state.take_script()
        if isinstance(script, _Delay):
            await _wait(state.stopping.is_set, script.seconds)
        response = _response(script, error)
        state.record(
            WebhookRequest(
                path=path,
                headers=headers,
                body=body,
                webhook_id=headers.get("webhook-id"),
                verified=error is None,
                status=response.status_code,
                error=error,
            ),
            generation,
        )
        await _wait(lambda: not state.held(), _HOLD_LIMIT)
        return response

    def _refuse(
        self, path: str, headers: dict[str, str], response: Response, error: str
    ) -> Response:
        """Answer at once, body unread, without taking a script."""
        request = WebhookRequest(
            path,
            headers,
            b"",
            headers.get("webhook-id"),
            False,
            response.status_code,
            error,
        )
        self._state.record(request, self._state.generation)
        return response


def _joined_headers(request: Request) -> dict[str, str]:
    """RFC 9110 §5.3: repeated field lines combine, in order, with commas."""
    joined: dict[str, str] = {}
    for name, value in request.headers.items():
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY: a declared length is refused before reading
    and an undeclared one (chunked) as soon as it passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > MAX_BODY:  # h11 checked the digits
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _verify(body: bytes, headers: dict[str, str], secrets: Sequence[str]) -> str | None:
    """None when one of ``secrets`` verifies the request, else why none did (the
    last secret's reason: a missing header or a stale timestamp fails them all)."""
    if not secrets:
        return "no secret configured"
    error = ""
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError as e:
            error = str(e)
        except (ValueError, EmptyWebhookSecretError) as e:  # not whsec_ + base64
            error = f"unusable secret: {e}"
        else:
            return None
    return error


def _response(script: _Script | None, error: str | None) -> Response:
    if isinstance(script, _Answer):
        return Response(script.body, script.status, dict(script.headers))
    if isinstance(script, _Huge):
        return StreamingResponse(
            _zeros(script.size),
            200,
            {"Content-Length": str(script.size)},
            media_type="application/octet-stream",
        )
    if error is not None:
        return PlainTextResponse(f"signature not verified: {error}\n", 401)
    return PlainTextResponse("ok\n", 200)


async def _zeros(size: int) -> AsyncIterator[bytes]:
    """``size`` zero bytes in chunks; uvicorn's flow control paces the writes, so a
    slow or vanished reader never makes them pile up in memory."""
    for start in range(0, size, len(_ZEROS)):
        yield _ZEROS[: min(len(_ZEROS), size - start)]


async def _wait(done: Callable[[], bool], limit: float) -> None:
    """Poll ``done`` until it is true or ``limit`` seconds have passed."""
    for _ in range(math.ceil(limit / _POLL)):
        if done():
            return
        await asyncio.sleep(_POLL)


def _accepted(request: WebhookRequest) -> bool:
    return request.verified and 200 <= request.status < 300


def _json_name(webhook_id: str) -> str:
    """``<webhook-id>.json``; an id that could leave the directory is hashed."""
    if _SAFE_ID.fullmatch(webhook_id):
        return f"{webhook_id}.json"
    return hashlib.sha256(webhook_id.encode()).hexdigest()[:32] + ".json"


def _write_json(directory: Path, request: WebhookRequest) -> None:
    """The body pretty-printed for a reader (as received if it is not JSON)."""
    try:
        text = json.dumps(json.loads(request.body), indent=2, ensure_ascii=False)
    except ValueError:
        data = request.body
    else:
        data = (text + "\n").encode()
    # A verified request carries a webhook-id: the library requires one.
    _write_atomically(directory / _json_name(request.webhook_id or ""), data)


def _run(server: Server) -> None:
    asyncio.run(server.serve())


class WebhookReceiver(Service):
    """A scripted webhook receiver on 127.0.0.1: a context manager, or start()/stop().

    ``secrets`` (``whsec_`` + base64) may be changed while it runs; a request
    verifies when any of them does. With none, every POST is answered 401.
    ``on_request`` is called in the receiver's thread with each request once it is
    recorded (the CLI prints it); it must be quick and must not raise. After
    stop(), start() binds the same port.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        secrets: Sequence[str] = (),
        json_dir: Path | None = None,
        on_request: Callable[[WebhookRequest], None] | None = None,
    ) -> None:
        if json_dir is not None:
            json_dir.mkdir(parents=True, exist_ok=True)
        self._port = port
        self.secrets: list[str] = list(secrets)
        self._state = _State(json_dir, on_request)
        self._app = _App(self._state, lambda: list(self.secrets))
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookReceiver:
        if self._server is not None:
            raise RuntimeError("the webhook receiver is already running")
        self._state.stopping.clear()
        server = Server(self._app, _HOST, self._port)  # bound and listening now
        self._port = server.port  # a restart binds the same port
        thread = threading.Thread(
            target=_run, args=(server,), name="kairan-webhook-receiver", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Answer what is waiting, close the socket and join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        self._state.stopping.set()
        server.stop()
        # Server.serve closes the socket on its way out, and uvicorn's graceful
        # shutdown is bounded, so this join is too.
        thread.join()

    @property
    def port(self) -> int:
        """The bound port; still known after stop(), so a test can expect refusals."""
        if self._port == 0:
            raise RuntimeError("the webhook receiver has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}/"

    @property
    def requests(self) -> list[WebhookRequest]:
        """Every request since start or reset(), in the order answered."""
        with self._state.changed:
            return list(self._state.requests)

    @property
    def accepted(self) -> list[WebhookRequest]:
        """The requests that verified and were answered 2xx."""
        return [r for r in self.requests if _accepted(r)]

    def accepted_ids(self) -> list[str]:
        """The webhook-id of each accepted request, repeated for a redelivery."""
        return [r.webhook_id or "" for r in self.accepted]

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: str | None = None,
        body: bytes = b"",
    ) -> None:
        """Answer the next ``count`` POSTs with ``status`` (and Retry-After)."""
        headers = () if retry_after is None else (("Retry-After", retry_after),)
        self._state.add_scripts(_Answer(status, headers, body), count)

    def redirect_next(self, location: str, count: int = 1) -> None:
        """Answer the next ``count`` POSTs 302 Found to ``location``."""
        self._state.add_scripts(_Answer(302, (("Location", location),)), count)

    def huge_body_next(self, size: int, count: int = 1) -> None:
        """Answer the next ``count`` POSTs 200 with ``size`` bytes, streamed."""
        self._state.add_scripts(_Huge(size), count)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Answer the next ``count`` POSTs ``seconds`` late; each is recorded when
        answered, whether its sender still listens or not."""
        self._state.add_scripts(_Delay(seconds), count)

    def hold(self) -> None:
        """From now on, record each request but keep its answer until release()
        (or 30 s, or stop()): the receiver has it, the sender does not know."""
        with self._state.changed:
            self._state.holding = True

    def release(self) -> None:
        with self._state.changed:
            self._state.holding = False

    def reset(self) -> None:
        """Forget every script and recorded request, and release (files and
        secrets stay); requests in flight across it are not recorded."""
        self._state.reset()

    async def wait_for(
        self,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109 (the same call as wait_for_sync)
    ) -> list[WebhookRequest]:
        """Wait until ``count`` requests were accepted; the accepted requests.

        Raises TimeoutError when fewer are within ``timeout`` seconds.
        """
        for _ in range(math.ceil(timeout / _POLL)):
            accepted = self.accepted
            if len(accepted) >= count:
                return accepted
            await asyncio.sleep(_POLL)
        return self._enough(count, timeout)

    def wait_for_sync(self, count: int, timeout: float = 10.0) -> list[WebhookRequest]:
        """wait_for, blocking the calling thread (not for use on an event loop)."""
        state = self._state
        with state.changed:
            state.changed.wait_for(
                lambda: sum(map(_accepted, state.requests)) >= count, timeout
            )
        return self._enough(count, timeout)

    def _enough(self, count: int, timeout: float) -> list[WebhookRequest]:
        accepted = self.accepted
        if len(accepted) < count:
            raise TimeoutError(
                f"the webhook receiver accepted {len(accepted)} of {count} requests"
                f" within {timeout:g} s"
            )
        return accepted


def _print_request(request: WebhookRequest) -> None:
    verdict = "verified" if request.verified else f"unverified ({request.error})"
    line = (
        f"{request.status} {request.webhook_id or '-'} {request.path}"
        f" {len(request.body)} bytes {verdict}\n"
    )
    sys.stdout.write(line)
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.sandbox.webhook_receiver",
        description="Verify Standard Webhooks POSTs on 127.0.0.1, one line each.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--secret",
        action="append",
        required=True,
        help="whsec_… signing secret; repeat it for a rotation",
    )
    parser.add_argument(
        "--json-dir", type=Path, help="write each accepted body here as <id>.json"
    )
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the receiver's thread starts, so only sigwait() receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with WebhookReceiver(
        args.port,
        secrets=args.secret,
        json_dir=args.json_dir,
        on_request=_print_request,
    ) as receiver:
        sys.stdout.write(receiver.url + "\n")
        sys.stdout.flush()
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
