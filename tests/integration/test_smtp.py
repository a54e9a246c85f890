"""SmtpTransport against the real sandbox SMTP sink: modes, classification, pooling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from aggregator.sandbox.smtp_sink import SmtpSink, Stage
from aggregator.settings import Secret
from notifiers.email import SmtpTransport
from notifiers.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RecipientRejected,
    TransientDeliveryError,
)
from tests.integration.smtp_fixtures import (
    SENDER,
    TlsContexts,
    email_settings,
    make_tls_contexts,
    message_bytes,
)

FOLLOWER = "follower@example.jp"
PASSWORD = "s3cret-pässword"


@pytest.fixture(scope="module")
def tls() -> TlsContexts:
    return make_tls_contexts()


@pytest.fixture(scope="module")
def plain_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def sink(plain_sink: SmtpSink) -> Iterator[SmtpSink]:
    """The module's plain sink, with no scripts, messages or counted sessions."""
    plain_sink.reset()
    try:
        yield plain_sink
    finally:
        plain_sink.reset()


@pytest.fixture
def own_sink() -> Iterator[SmtpSink]:
    """A plain sink for one test, which may stop and start it."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def assert_reported(error: DeliveryError, sink: SmtpSink, *words: str) -> None:
    """One line, naming the server and saying what happened."""
    text = str(error)
    assert "\n" not in text
    assert f"smtp 127.0.0.1:{sink.port}: " in text
    for word in words:
        assert word in text


def read_dir(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


async def send_one(transport: SmtpTransport, to: str = FOLLOWER) -> bytes:
    message = message_bytes(to=to)
    await transport.send(SENDER, to, message)
    return message


async def test_plain_send_arrives_byte_identical(sink: SmtpSink) -> None:
    async with SmtpTransport(email_settings(sink)) as transport:
        sent = await send_one(transport)
    [received] = sink.wait_for(1)
    assert received.data == sent  # the sink adds no header; dot-stuffing undone
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (FOLLOWER,)
    assert received.message["Subject"] == "新着記事"
    assert ".で始まる行" in received.message.get_content()


async def test_non_ascii_address_uses_smtputf8(sink: SmtpSink) -> None:
    recipient = "市民@example.jp"
    async with SmtpTransport(email_settings(sink)) as transport:
        await transport.send(SENDER, recipient, message_bytes())
    assert sink.wait_for(1)[0].rcpt_tos == (recipient,)


async def test_starttls(tls: TlsContexts) -> None:
    # require_starttls: the sink answers 530 to MAIL unless TLS was started
    with SmtpSink(tls_context=tls.server, require_starttls=True) as sink:
        settings = email_settings(sink, security="starttls")
        async with SmtpTransport(settings, tls_context=tls.client) as transport:
            sent = await send_one(transport)
        assert sink.wait_for(1)[0].data == sent


async def test_implicit_tls(tls: TlsContexts) -> None:
    with SmtpSink(ssl_context=tls.server) as sink:
        settings = email_settings(sink, security="tls")
        async with SmtpTransport(settings, tls_context=tls.client) as transport:
            sent = await send_one(transport)
        assert sink.wait_for(1)[0].data == sent


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_untrusted_certificate_is_transient(
    tls: TlsContexts, security: str
) -> None:
    if security == "starttls":
        server = SmtpSink(tls_context=tls.server)
    else:
        server = SmtpSink(ssl_context=tls.server)
    with server as sink:
        settings = email_settings(sink, security=security)
        async with SmtpTransport(settings) as transport:  # system CAs only
            with pytest.raises(TransientDeliveryError) as caught:
                await send_one(transport)
        assert_reported(caught.value, sink, "TLS handshake failed")
        assert sink.count == 0


async def test_auth(tls: TlsContexts) -> None:
    with SmtpSink(tls_context=tls.server, credentials=("kairan", PASSWORD)) as sink:
        settings = email_settings(
            sink, security="starttls", username="kairan", password=Secret(PASSWORD)
        )
        async with SmtpTransport(settings, tls_context=tls.client) as transport:
            await send_one(transport)
        assert len(sink.wait_for(1)) == 1


async def test_wrong_password_is_transient_and_secret(tls: TlsContexts) -> None:
    with SmtpSink(tls_context=tls.server, credentials=("kairan", "right")) as sink:
        settings = email_settings(
            sink, security="starttls", username="kairan", password=Secret(PASSWORD)
        )
        async with SmtpTransport(settings, tls_context=tls.client) as transport:
            with pytest.raises(TransientDeliveryError) as caught:
                await send_one(transport)
        assert_reported(caught.value, sink, "authentication failed (535")
        assert PASSWORD not in str(caught.value)
        assert PASSWORD not in repr(caught.value)
        assert sink.count == 0


async def test_starttls_not_offered_is_transient(sink: SmtpSink) -> None:
    async with SmtpTransport(email_settings(sink, security="starttls")) as transport:
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
    assert_reported(caught.value, sink, "does not offer STARTTLS")
    assert sink.count == 0


async def test_tls_required_by_server_is_transient(tls: TlsContexts) -> None:
    # security "none" against a server that insists on STARTTLS: 530 at MAIL FROM
    # is the operator's mistake, not the message's
    with SmtpSink(tls_context=tls.server, require_starttls=True) as sink:
        async with SmtpTransport(email_settings(sink)) as transport:
            with pytest.raises(TransientDeliveryError) as caught:
                await send_one(transport)
        assert not isinstance(caught.value, PermanentDeliveryError)
        assert_reported(caught.value, sink, "MAIL FROM refused (530")


async def test_rcpt_4xx_is_transient_and_the_connection_is_reused(
    sink: SmtpSink,
) -> None:
    sink.reject("busy@example.jp", code=450)
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport, "BUSY@example.jp")
        await send_one(transport)
    assert_reported(caught.value, sink, "RCPT TO refused (450")
    assert [r.rcpt_tos for r in sink.wait_for(1)] == [(FOLLOWER,)]
    assert sink.sessions == 1  # RSET, then the next transaction on the same one


async def test_rcpt_5xx_is_a_hard_bounce(sink: SmtpSink) -> None:
    sink.reject("gone@example.jp", code=550, text="5.1.1 no such user")
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(RecipientRejected) as caught:
            await send_one(transport, "gone@example.jp")
    assert_reported(caught.value, sink, "RCPT TO refused (550 5.1.1 no such user)")
    assert sink.count == 0


@pytest.mark.parametrize(
    ("stage", "command"), [("data", "DATA"), ("mail", "MAIL FROM")]
)
async def test_other_5xx_is_permanent_but_not_a_bounce(
    sink: SmtpSink, stage: Stage, command: str
) -> None:
    sink.fail_next(1, code=554, stage=stage)
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(PermanentDeliveryError) as caught:
            await send_one(transport)
        await send_one(transport)
    assert not isinstance(caught.value, RecipientRejected)
    assert_reported(caught.value, sink, f"{command} refused (554")
    assert len(sink.wait_for(1)) == 1


@pytest.mark.parametrize(
    "recipient", ["a@example.jp\r\nRSET", "Name <a@example.jp>", "a@example.jp\x00"]
)
async def test_address_aiosmtplib_would_rewrite_is_refused(
    sink: SmtpSink, recipient: str
) -> None:
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(PermanentDeliveryError) as refused:
            await transport.send(SENDER, recipient, message_bytes())
        with pytest.raises(TransientDeliveryError) as misconfigured:
            await transport.send(recipient, FOLLOWER, message_bytes())
    assert not isinstance(refused.value, RecipientRejected)  # no server said so
    assert_reported(refused.value, sink, "bad recipient")
    assert_reported(misconfigured.value, sink, "bad sender")
    assert sink.sessions == 0


@pytest.mark.parametrize("code", [421, 451])
async def test_4xx_at_data_is_transient(sink: SmtpSink, code: int) -> None:
    sink.fail_next(1, code=code, stage="data")
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
        await send_one(transport)
    assert_reported(caught.value, sink, f"DATA refused ({code}")
    assert len(sink.wait_for(1)) == 1
    assert sink.sessions == (2 if code == 421 else 1)  # 421 closes the connection


async def test_server_down_then_up_on_the_same_port(own_sink: SmtpSink) -> None:
    async with SmtpTransport(email_settings(own_sink)) as transport:
        await send_one(transport)
        port = own_sink.port
        own_sink.stop()
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
        assert_reported(caught.value, own_sink, "connection refused")
        own_sink.start()
        assert own_sink.port == port
        await send_one(transport)
    assert own_sink.count == 2  # a restart keeps what the sink had received


async def test_idle_connection_lost_is_replaced_transparently(
    own_sink: SmtpSink,
) -> None:
    async with SmtpTransport(email_settings(own_sink)) as transport:
        await send_one(transport)
        own_sink.stop()  # hangs up on the pooled connection
        own_sink.start()
        await send_one(transport)
    assert own_sink.count == 2
    assert own_sink.sessions == 2


async def test_loss_before_data_is_retried_once_on_a_new_connection(
    sink: SmtpSink,
) -> None:
    async with SmtpTransport(email_settings(sink)) as transport:
        await send_one(transport)
        sink.drop_next(1, stage="mail")
        await send_one(transport)  # the pooled one dropped; a new one carried it
        assert sink.sessions == 2
        sink.drop_next(2, stage="mail")
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
    assert_reported(caught.value, sink, "connection lost during MAIL FROM")
    assert sink.sessions == 3  # one replacement, not a retry loop
    assert sink.count == 2


async def test_connection_dropped_mid_data_is_transient(sink: SmtpSink) -> None:
    sink.drop_next(1)
    async with SmtpTransport(email_settings(sink)) as transport:
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
        await send_one(transport)
    # never retried by the transport: the server might have kept the message
    assert_reported(caught.value, sink, "connection lost during DATA")
    assert sink.count == 1


async def test_slow_data_reply_times_out(sink: SmtpSink) -> None:
    sink.delay(3.0)
    async with SmtpTransport(email_settings(sink, timeout=0.5)) as transport:
        with pytest.raises(TransientDeliveryError) as caught:
            await send_one(transport)
        sink.delay(0)
        await send_one(transport)
    assert_reported(caught.value, sink, "DATA timed out after 0.5 s")
    assert sink.count == 1


async def test_pool_reuses_at_most_concurrency_connections(sink: SmtpSink) -> None:
    recipients = [f"follower{n}@example.jp" for n in range(30)]
    async with SmtpTransport(email_settings(sink, concurrency=3)) as transport:
        await asyncio.gather(*(send_one(transport, to) for to in recipients))
    received = sink.wait_for(30)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(recipients)
    assert sink.max_concurrent_sessions == 3
    assert sink.sessions == 3


async def test_eml_dir_holds_openable_files(tmp_path: Path) -> None:
    with SmtpSink(eml_dir=tmp_path) as sink:
        async with SmtpTransport(email_settings(sink)) as transport:
            first = await send_one(transport, "a@example.jp")
            await send_one(transport, "b@example.jp")
        sink.wait_for(2)
    with SmtpSink(eml_dir=tmp_path) as sink:  # a rerun appends, never overwrites
        async with SmtpTransport(email_settings(sink)) as transport:
            await send_one(transport, "c@example.jp")
        sink.wait_for(1)
    files = read_dir(tmp_path)
    assert sorted(files) == ["0001.eml", "0002.eml", "0003.eml"]  # no temp files
    assert files["0001.eml"] == first
    parsed = BytesParser(policy=policy.default).parsebytes(files["0003.eml"])
    assert parsed["To"] == "c@example.jp"
    assert parsed["Subject"] == "新着記事"


def test_sink_refuses_conflicting_tls_modes(tls: TlsContexts) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        SmtpSink(tls_context=tls.server, ssl_context=tls.server)
    with pytest.raises(ValueError, match="needs a tls_context"):
        SmtpSink(require_starttls=True)


def test_sink_wait_for_is_bounded(sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError, match="accepted 0 of 1"):
        sink.wait_for(1, timeout=0.05)


def test_transport_refuses_unknown_security(sink: SmtpSink) -> None:
    with pytest.raises(ValueError, match="security"):
        SmtpTransport(email_settings(sink, security="ssl"))
