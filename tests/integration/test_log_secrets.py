"""Logs name members and subscribers, and never carry a secret (issue 6 §3).

A webhook's signing secret, a failed POST's answer and every step of a poll and a
delivery pass go through the real poller and delivery pass, logged at debug level in
both formats; the secret must appear in no line, and each JSON line must parse.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator import logs
from aggregator.sandbox.feed_server import FeedServer
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from tests.support.builders import member
from tests.support.clock import FixedClock
from tests.support.webhooks import (
    WebhookWorld,
    article,
    webhook_settings,
    webhook_world,
)


@pytest.fixture
async def world(
    tmp_path: Path,
    feed_server: FeedServer,
    receiver: WebhookReceiver,
    clock: FixedClock,
) -> AsyncIterator[WebhookWorld]:
    config = webhook_settings(
        tmp_path, (member("city", feed_server.url("/city.xml"), name="テスト市"),)
    )
    async with webhook_world(config, feed_server, receiver, clock) as w:
        yield w


@pytest.mark.parametrize("fmt", ["kv", "json"])
async def test_a_webhook_secret_is_in_no_log_line(
    world: WebhookWorld, fmt: str
) -> None:
    stream = io.StringIO()
    logs.setup("debug", fmt, stream)
    try:
        world.serve("city")
        await world.poll()  # the baseline
        added = world.add_endpoint()
        world.clock.advance(3600)
        world.serve("city", article(2, "議事録要約の試行", world.clock.now()))
        await world.poll()
        world.receiver.fail_next(500, body=b"upstream down")
        assert (await world.deliver()).count("retry") == 1
        world.clock.advance(60)
        assert (await world.deliver()).count("sent") == 1
    finally:
        logs.setup()
    text = stream.getvalue()
    secret = added.secret
    assert secret.startswith("whsec_")
    for needle in (secret, secret.removeprefix("whsec_")):
        assert needle not in text
    lines = text.splitlines()
    # The events carry their context: which member, which subscriber.
    if fmt == "json":
        events = [json.loads(line) for line in lines]
        [sent] = [e for e in events if e["event"] == "delivery.sent"]
        assert sent["subscriber"] == added.subscriber.id
        assert sent["channel"] == "webhook"
        assert any(e.get("member") == "city" for e in events)
    else:
        [sent] = [line for line in lines if " delivery.sent " in line]
        assert f"subscriber={added.subscriber.id}" in sent
        assert any("member=city" in line for line in lines)
