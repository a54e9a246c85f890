"""aiosmtplib transport: TLS mode, login, send; SMTP 4xx → transient, 5xx → permanent.

`SmtpTransport` keeps up to ``concurrency`` connections open and reuses them, since
setting one up (TCP, greeting, EHLO, STARTTLS, AUTH) costs more than a message.
Every failure becomes a `DeliveryError` whose message is one line naming the
server and, when there was one, the SMTP reply:

* 5xx to RCPT TO → `RecipientRejected` (a hard bounce);
* 5xx to MAIL FROM or DATA → `PermanentDeliveryError`;
* everything else → `TransientDeliveryError`: 4xx (421 included), refused, reset
  or dropped connections, timeouts, DNS and TLS failures, and whatever goes wrong
  while setting a connection up (greeting, EHLO, STARTTLS, AUTH). So do 530/535/538
  at any stage: they are about our session (credentials, TLS), not the message,
  and an operator's configuration mistake must not fail followers' mail for good.

An address that aiosmtplib would rewrite (CR/LF, a display name) is refused before
any connection: a recipient permanently, the sender (config) transiently. This is
the only module that imports aiosmtplib; its exceptions never leave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable
from types import TracebackType

import aiosmtplib
from aiosmtplib.email import parse_address

from aggregator import logs
from aggregator.settings import EmailSettings
from notifiers.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RecipientRejected,
    TransientDeliveryError,
)

log = logs.get("email")

_SECURITY = ("none", "starttls", "tls")
_SETUP = frozenset({"connect", "EHLO", "STARTTLS", "AUTH"})
# RFC 4954 §6: authentication required, credentials invalid, encryption required.
_SESSION_REFUSALS = frozenset({530, 535, 538})
_CLOSING = 421  # RFC 5321 §3.8: the server closes the channel after this reply


class _LostBeforeData(TransientDeliveryError):
    """The connection went away before DATA: the server cannot have the message."""


class SmtpTransport:
    """Send one message to one recipient at a time over pooled SMTP connections.

    An async context manager: connections open on demand, and leaving the
    context QUITs every one of them.
    """

    def __init__(
        self, settings: EmailSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        if settings.security not in _SECURITY:
            raise ValueError(
                f"email security {settings.security!r} is not one of {_SECURITY}"
            )
        if settings.concurrency < 1:
            raise ValueError("email concurrency must be at least 1")
        self._settings = settings
        self._where = f"smtp {settings.host}:{settings.port}"
        if tls_context is None and settings.security != "none":
            # Built once: aiosmtplib would otherwise load the CA store per connection.
            tls_context = ssl.create_default_context()
        self._tls_context = tls_context
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._idle: list[aiosmtplib.SMTP] = []
        self._local_hostname: str | None = None  # our FQDN for EHLO, looked up once
        self._closed = False

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(client) for client in idle))

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        """Deliver ``message`` (CRLF line ends) to ``recipient`` or raise DeliveryError.

        A pooled connection the server has dropped is replaced once, transparently,
        when the loss shows before DATA; from DATA on the server may hold the
        message, so the failure is reported instead of risking a second copy.
        """
        if self._closed:
            raise RuntimeError("the SMTP transport is closed")
        if not _is_mailbox(envelope_from):  # config.py's job; never fail followers
            raise TransientDeliveryError(f"{self._where}: bad sender {envelope_from!r}")
        if not _is_mailbox(recipient):
            raise PermanentDeliveryError(f"{self._where}: bad recipient {recipient!r}")
        async with self._slots:
            client = self._take_idle()
            if client is not None:
                try:
                    await self._send_on(client, envelope_from, recipient, message)
                except _LostBeforeData as error:
                    log.info("email.reconnect", extra=logs.fields(reason=error.message))
                else:
                    return
            client = await self._connect()
            await self._send_on(client, envelope_from, recipient, message)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()  # the server hung up while it was idle
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout,
            use_tls=settings.security == "tls",
            start_tls=False,  # done below, so that "not offered" is our own error
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        ready = False
        try:
            await self._command(client, "connect", client.connect())
            await self._command(client, "EHLO", client.ehlo())
            if settings.security == "starttls":
                await self._starttls(client)
            if settings.username is not None:
                await self._login(client, settings.username)
            ready = True
        finally:
            if not ready:
                client.close()
        self._local_hostname = client.local_hostname
        log.debug(
            "email.connected",
            extra=logs.fields(
                host=settings.host, port=settings.port, security=settings.security
            ),
        )
        return client

    async def _starttls(self, client: aiosmtplib.SMTP) -> None:
        if not client.supports_extension("starttls"):
            raise TransientDeliveryError(
                f"{self._where}: security is starttls but the server"
                " does not offer STARTTLS"
            )
        await self._command(client, "STARTTLS", client.starttls())
        # RFC 3207 §4.2: forget what the server said before TLS and ask again.
        await self._command(client, "EHLO", client.ehlo())

    async def _login(self, client: aiosmtplib.SMTP, username: str) -> None:
        if not client.supports_extension("auth"):
            over = "" if self._settings.security != "none" else " without TLS"
            raise TransientDeliveryError(
                f"{self._where}: a username is set but the server"
                f" does not offer AUTH{over}"
            )
        password = self._settings.password
        secret = password.reveal() if password is not None else ""
        await self._command(client, "AUTH", client.login(username, secret))

    async def _send_on(
        self,
        client: aiosmtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
    ) -> None:
        """One transaction; the connection returns to the pool if it is still sound."""
        reusable = False
        try:
            await self._transact(client, envelope_from, recipient, message)
            reusable = True
        except DeliveryError:
            reusable = client.is_connected and await _reset(client)
            raise
        finally:
            if reusable and not self._closed:
                self._idle.append(client)
            else:
                client.close()

    async def _transact(
        self,
        client: aiosmtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
    ) -> None:
        options, encoding = self._mail_parameters(
            client, envelope_from, recipient, message
        )
        await self._command(
            client,
            "MAIL FROM",
            client.mail(envelope_from, options=options, encoding=encoding),
        )
        await self._command(
            client, "RCPT TO", client.rcpt(recipient, encoding=encoding)
        )
        await self._command(client, "DATA", client.data(message))

    def _mail_parameters(
        self,
        client: aiosmtplib.SMTP,
        envelope_from: str,
        recipient: str,
        message: bytes,
    ) -> tuple[list[str], str]:
        """MAIL FROM parameters (RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531
        SMTPUTF8) and the encoding of the addresses."""
        options = [f"SIZE={len(message)}"] if client.supports_extension("size") else []
        if not message.isascii():
            self._require(client, "8bitmime", "an 8-bit message")
            options.append("BODY=8BITMIME")
        if (envelope_from + recipient).isascii():
            return options, "ascii"
        self._require(client, "smtputf8", "a non-ASCII address")
        return [*options, "SMTPUTF8"], "utf-8"

    def _require(
        self, client: aiosmtplib.SMTP, extension: str, needed_for: str
    ) -> None:
        if not client.supports_extension(extension):
            raise TransientDeliveryError(
                f"{self._where}: the server does not offer {extension.upper()},"
                f" needed for {needed_for}"
            )

    async def _command(
        self, client: aiosmtplib.SMTP, command: str, reply: Awaitable[object]
    ) -> None:
        """Await one SMTP exchange, translating aiosmtplib's exceptions into ours.

        Raised ``from None``: the message already carries the reply or the cause
        (KairanError's str() would repeat a chained one), and the original stays in
        ``__context__`` for a traceback.
        """
        try:
            await reply
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == _CLOSING:
                client.close()
            raise self._refused(command, exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._broken(command, exc) from None

    def _refused(self, command: str, code: int, text: str) -> DeliveryError:
        reply = f"{code} {_line(text)}".strip()
        if command == "AUTH":
            return TransientDeliveryError(
                f"{self._where}: authentication failed ({reply})"
            )
        problem = f"{self._where}: {command} refused ({reply})"
        if command in _SETUP or code in _SESSION_REFUSALS or not 500 <= code < 600:
            return TransientDeliveryError(problem)
        if command == "RCPT TO":
            return RecipientRejected(problem)
        return PermanentDeliveryError(problem)

    def _broken(
        self, command: str, exc: aiosmtplib.SMTPException | OSError
    ) -> DeliveryError:
        problem = f"{self._where}: {_breakage(command, exc, self._settings.timeout)}"
        if command in ("MAIL FROM", "RCPT TO") and isinstance(exc, ConnectionError):
            return _LostBeforeData(problem)
        return TransientDeliveryError(problem)

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
        client.close()


def _is_mailbox(address: str) -> bool:
    """Whether aiosmtplib would put ``address`` on the command line unchanged.

    Its parser is lenient: it would turn ``a@b\\r\\nRSET`` into ``a@b`` and a
    display name into the bare address, mailing someone other than the one asked.
    """
    try:
        parsed = parse_address(address)
    except ValueError:
        return False
    return parsed == address and address.isprintable()


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused transaction, so the connection can carry the next one."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


def _breakage(
    command: str, exc: aiosmtplib.SMTPException | OSError, timeout: float
) -> str:
    """What went wrong with the connection, in a few words."""
    if isinstance(exc, ssl.SSLError):  # a STARTTLS handshake raises it unwrapped
        return _tls_problem(exc)
    if isinstance(exc, TimeoutError):
        return f"{command} timed out after {timeout:g} s"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return _connect_problem(exc)
    if isinstance(exc, ConnectionError):
        return f"connection lost during {command}"
    return f"{command} failed ({_line(exc)})"


def _connect_problem(exc: aiosmtplib.SMTPConnectError) -> str:
    cause = exc.__cause__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host ({cause.strerror})"
    if isinstance(cause, ssl.SSLError):
        return _tls_problem(cause)
    if isinstance(cause, aiosmtplib.SMTPServerDisconnected):
        return "connection lost before the greeting"
    return f"cannot connect ({_line(cause or exc)})"


def _tls_problem(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message
    else:
        detail = exc.reason or _line(exc)
    return f"TLS handshake failed ({detail})"


def _line(value: object) -> str:
    """``value`` as one line: servers' multi-line replies, exceptions' messages."""
    if isinstance(value, aiosmtplib.SMTPException):
        value = value.message
    elif isinstance(value, OSError) and value.strerror:
        value = value.strerror
    return " ".join(str(value).split())
