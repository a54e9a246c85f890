"""Scripted SMTP sink on 127.0.0.1 shared by the tests, `kairan demo` and the bench.

An aiosmtpd Controller (its own event loop in a daemon thread) that accepts mail
for anyone and records each message as a `Received`, optionally also writing it as
``NNNN.eml`` for a user to open. Modes: plain, STARTTLS (``tls_context``), implicit
TLS (``ssl_context``), AUTH (``credentials``). Scripts, thread-safe, make it
misbehave the way real servers do: a recipient refused, the next transactions
failed with a code at a stage, the connection dropped, DATA answered late.

Run alone for a benchmark::

    python -m aggregator.sandbox.smtp_sink [--port P] [--eml-dir DIR]

It prints its URL (``smtp://127.0.0.1:PORT``) as the first line of stdout and stops
on SIGTERM/SIGINT. Run alone it keeps no messages in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import hmac
import os
import re
import signal
import ssl
import sys
import threading
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, AnyStr, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from aggregator.sandbox.service import Service

Stage = Literal["mail", "rcpt", "data"]

_HOST = "127.0.0.1"
_SERVER_NAME = "kairan-sink.localhost"  # given, so aiosmtpd does not look up our FQDN
_STOP_TIMEOUT = 5.0  # seconds stop() waits for sessions to hang up
_HOLD_LIMIT = 30.0  # seconds a held reply waits at most
_HOLD_POLL = 0.01
_EML_NAME = re.compile(r"(\d+)\.eml")


@dataclass(frozen=True, slots=True)
class Received:
    """One accepted message: its envelope, its bytes exactly as received, parsed."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # dot-unstuffed DATA, CRLF line ends; the sink adds no header
    message: EmailMessage  # `data` parsed with email.policy.default


@dataclass(slots=True)
class _Failure:
    remaining: int
    reply: str


class _State:
    """Everything the test thread and the sink's loop thread share, behind one lock."""

    def __init__(self, record: bool, eml_dir: Path | None) -> None:
        self.changed = threading.Condition()
        self.record = record
        self.eml_dir = eml_dir
        self.eml_next = _next_eml_number(eml_dir) if eml_dir else 1
        self.received: list[Received] = []
        self.count = 0  # accepted messages, recorded or not
        self.sessions = 0  # greeted connections (EHLO/HELO) since start or reset
        self.active = 0
        self.max_active = 0
        self.rejected: dict[str, str] = {}  # lower-cased address → RCPT reply
        self.failures: dict[Stage, _Failure] = {}
        self.drops: dict[Stage, int] = {}
        self.delay = 0.0
        self.holding = False  # accepted messages wait for release() before their 250
        # Sessions alive in the loop thread, for stop(); only that thread touches it.
        self.live: set[_Protocol] = set()

    def session_opened(self) -> None:
        with self.changed:
            self.sessions += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def session_closed(self) -> None:
        with self.changed:
            self.active -= 1

    def take_failure(self, stage: Stage) -> str | None:
        """The scripted reply for this command at ``stage``, consuming one."""
        with self.changed:
            failure = self.failures.get(stage)
            if failure is None:
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self.failures[stage]
            return failure.reply

    def take_drop(self, stage: Stage) -> bool:
        with self.changed:
            left = self.drops.get(stage, 0)
            if left <= 0:
                return False
            self.drops[stage] = left - 1
            return True

    def rcpt_reply(self, address: str) -> str | None:
        with self.changed:
            return self.rejected.get(address.lower())

    def accept(self, envelope: Envelope) -> None:
        """Record a message; its .eml file exists before any waiter can see it."""
        data = envelope.original_content or b""
        if self.eml_dir is not None:
            _write_atomically(self.eml_dir / f"{self.eml_next:04d}.eml", data)
            self.eml_next += 1  # the loop thread is the only writer
        received = None
        if self.record:
            received = Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                message=email.message_from_bytes(data, policy=policy.default),
            )
        with self.changed:
            self.count += 1
            if received is not None:
                self.received.append(received)
            self.changed.notify_all()

    def reset(self) -> None:
        with self.changed:
            self.received.clear()
            self.count = 0
            # Connections open across a reset stay open: count them as the baseline.
            self.sessions = 0
            self.max_active = self.active
            self.rejected.clear()
            self.failures.clear()
            self.drops.clear()
            self.delay = 0.0
            self.holding = False


class _QuietSession(Session):
    # aiosmtpd 1.4.6 logs a deprecation warning each time its own AUTH code sets
    # `login_data`; a plain attribute here shadows that property.
    login_data: Any = None


class _Protocol(SMTP):
    """An aiosmtpd session that the sink counts and can hang up on."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = handler.state
        self._greeted = False

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._state.live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._state.live.discard(self)
        if self._greeted:
            self._greeted = False
            self._state.session_closed()
        super().connection_lost(error)

    def greeted(self) -> None:
        """Count this connection once, at its first EHLO/HELO (start()'s probe never
        says hello, and STARTTLS's second EHLO is the same session)."""
        if not self._greeted:
            self._greeted = True
            self._state.session_opened()

    def hang_up(self) -> None:
        """Drop the connection at once, without a reply (a crash, a cut cable)."""
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    async def push(self, status: AnyStr) -> None:
        await super().push(status)
        # RFC 5321 §3.8: a server that answers 421 closes the channel.
        if status[:3] in ("421", b"421") and self.transport is not None:
            self.transport.close()


class _Handler:
    """aiosmtpd hooks (found by their names): accept all unless a script says not."""

    def __init__(self, state: _State, credentials: tuple[str, str] | None) -> None:
        self.state = state
        self._credentials = credentials

    async def handle_EHLO(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: _Protocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        server.greeted()
        session.host_name = hostname
        return responses

    async def handle_HELO(  # noqa: N802 (aiosmtpd's hook name)
        self, server: _Protocol, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        server.greeted()
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: _Protocol,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns
        # (a UserWarning, an error under pytest) when AUTH is allowed without TLS.
        if self._credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        await self._maybe_drop(server, "mail")
        reply = self.state.take_failure("mail")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: _Protocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        await self._maybe_drop(server, "rcpt")
        reply = self.state.take_failure("rcpt") or self.state.rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: _Protocol, session: Session, envelope: Envelope
    ) -> str:
        await self._maybe_drop(server, "data")
        with self.state.changed:
            delay = self.state.delay
        if delay > 0:
            # Cancelled with the session when the client gives up or stop() runs.
            await asyncio.sleep(delay)
        reply = self.state.take_failure("data")
        if reply is not None:
            return reply
        self.state.accept(envelope)
        await self._held()
        return "250 OK"

    async def _held(self) -> None:
        """While hold() is on, the 250 waits: the message is in, the client unsure."""
        for _ in range(int(_HOLD_LIMIT / _HOLD_POLL)):
            with self.state.changed:
                if not self.state.holding:
                    return
            await asyncio.sleep(_HOLD_POLL)

    async def _maybe_drop(self, server: _Protocol, stage: Stage) -> None:
        if self.state.take_drop(stage):
            server.hang_up()
            # connection_lost() cancels this session's task; it never answers.
            await asyncio.get_running_loop().create_future()

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        """aiosmtpd's `authenticator` for LOGIN and PLAIN."""
        ok = (
            self._credentials is not None
            and isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, self._credentials[0].encode())
            and hmac.compare_digest(auth_data.password, self._credentials[1].encode())
        )
        return AuthResult(success=ok, handled=False)


class _Controller(Controller):
    """aiosmtpd's Controller, with port 0 resolved before its readiness probe.

    aiosmtpd 1.4.6 probes ``(hostname, self.port)`` after binding, which fails for
    port 0; binding here records the real port first.
    """

    def factory(self) -> SMTP:
        return _Protocol(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


class SmtpSink(Service):
    """A scripted SMTP server on 127.0.0.1: a context manager, or start()/stop().

    ``tls_context`` (a server context) offers STARTTLS, required before MAIL with
    ``require_starttls``; ``ssl_context`` serves implicit TLS instead. With
    ``credentials`` MAIL needs AUTH (LOGIN or PLAIN), which is offered only over
    TLS unless ``allow_plaintext_auth``. After stop(), start() binds the same port.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        allow_plaintext_auth: bool = False,
        eml_dir: Path | None = None,
        record: bool = True,
    ) -> None:
        if tls_context is not None and ssl_context is not None:
            raise ValueError(
                "tls_context (STARTTLS) and ssl_context (TLS) exclude each other"
            )
        if require_starttls and tls_context is None:
            raise ValueError("require_starttls needs a tls_context")
        if eml_dir is not None:
            eml_dir.mkdir(parents=True, exist_ok=True)
        self._port = port
        self._ssl_context = ssl_context
        self._state = _State(record, eml_dir)
        self._handler = _Handler(self._state, credentials)
        self._smtp_options: dict[str, Any] = {
            "tls_context": tls_context,
            "require_starttls": require_starttls,
            # aiosmtpd offers AUTH "over TLS" only after STARTTLS, so an implicit
            # TLS listener has to allow it on what aiosmtpd sees as plaintext.
            "auth_require_tls": not (allow_plaintext_auth or ssl_context is not None),
            "authenticator": self._handler.authenticate,
        }
        self._controller: _Controller | None = None

    def start(self) -> SmtpSink:
        if self._controller is not None:
            raise RuntimeError("the SMTP sink is already running")
        controller = _Controller(
            self._handler,
            hostname=_HOST,
            port=self._port,
            ssl_context=self._ssl_context,
            server_hostname=_SERVER_NAME,
            **self._smtp_options,
        )
        controller.start()
        self._port = controller.port  # a restart binds the same port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Hang up on every session, close the socket and join the thread."""
        controller = self._controller
        if controller is None:
            return
        self._controller = None
        try:
            hang_up = asyncio.run_coroutine_threadsafe(
                _hang_up(controller, self._state), controller.loop
            )
            hang_up.result(_STOP_TIMEOUT)
        finally:
            controller.stop()

    @property
    def host(self) -> str:
        return _HOST

    @property
    def port(self) -> int:
        """The bound port; still known after stop(), so a test can expect refusals."""
        if self._port == 0:
            raise RuntimeError("the SMTP sink has not been started")
        return self._port

    @property
    def url(self) -> str:
        scheme = "smtps" if self._ssl_context is not None else "smtp"
        return f"{scheme}://{_HOST}:{self.port}"

    @property
    def messages(self) -> list[Received]:
        with self._state.changed:
            return list(self._state.received)

    @property
    def count(self) -> int:
        """Messages accepted since start or reset(), recorded or not."""
        with self._state.changed:
            return self._state.count

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` messages were accepted; the recorded messages.

        Raises TimeoutError when fewer arrive within ``timeout`` seconds.
        """
        state = self._state
        with state.changed:
            if not state.changed.wait_for(lambda: state.count >= count, timeout):
                raise TimeoutError(
                    f"the SMTP sink accepted {state.count} of {count} messages"
                    f" within {timeout:g} s"
                )
            return list(state.received)

    @property
    def sessions(self) -> int:
        """Connections that said EHLO/HELO since start or reset()."""
        with self._state.changed:
            return self._state.sessions

    @property
    def max_concurrent_sessions(self) -> int:
        with self._state.changed:
            return self._state.max_active

    def reject(self, address: str, code: int = 550, text: str | None = None) -> None:
        """Answer RCPT TO for ``address`` (any case) with ``code`` from now on."""
        detail = text or f"{code // 100}.1.1 mailbox unavailable"
        with self._state.changed:
            self._state.rejected[address.lower()] = f"{code} {detail}"

    def fail_next(
        self,
        count: int,
        code: int = 451,
        stage: Stage = "data",
        text: str | None = None,
    ) -> None:
        """Answer the next ``count`` commands at ``stage`` with ``code``.

        A 421 also closes the connection, as RFC 5321 §3.8 says. Replaces an
        earlier script for the same stage.
        """
        detail = text or f"{code // 100}.0.0 scripted failure"
        with self._state.changed:
            self._state.failures[stage] = _Failure(count, f"{code} {detail}")

    def drop_next(self, count: int, stage: Stage = "data") -> None:
        """Close the connection abruptly, without a reply, at the next ``count``
        commands at ``stage`` (for DATA: once the message has been sent)."""
        with self._state.changed:
            self._state.drops[stage] = count

    def delay(self, seconds: float) -> None:
        """Answer every DATA ``seconds`` late from now on (0 turns it off)."""
        with self._state.changed:
            self._state.delay = seconds

    def hold(self) -> None:
        """From now on, accept and record each message but keep its 250 until
        release(): a client killed meanwhile sent it without knowing (crash tests)."""
        with self._state.changed:
            self._state.holding = True

    def release(self) -> None:
        with self._state.changed:
            self._state.holding = False

    def reset(self) -> None:
        """Forget every script, received message and session count (files stay)."""
        self._state.reset()


async def _hang_up(controller: _Controller, state: _State) -> None:
    """In the sink's loop: stop listening, drop every session, let their tasks end.

    Without this, aiosmtpd's stop() leaves client sockets to be closed by the
    garbage collector, and a client would not notice the server went away.
    """
    if controller.server is not None:
        controller.server.close()
    for protocol in list(state.live):
        protocol.hang_up()
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_STOP_TIMEOUT / 2)


def _next_eml_number(directory: Path) -> int:
    """One past the highest ``NNNN.eml`` already there: a rerun never overwrites."""
    numbers = (_EML_NAME.fullmatch(p.name) for p in directory.iterdir())
    return max((int(m.group(1)) for m in numbers if m), default=0) + 1


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.sandbox.smtp_sink",
        description="Accept every message on 127.0.0.1; optionally write each as .eml.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--eml-dir", type=Path, help="write each message here as NNNN.eml"
    )
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the sink's thread starts, so only sigwait() below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with SmtpSink(args.port, eml_dir=args.eml_dir, record=False) as sink:
        sys.stdout.write(sink.url + "\n")
        sys.stdout.flush()
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
