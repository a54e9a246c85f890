"""poll → outbox → delivery pass → a real webhook receiver: what endpoints receive.

The sandbox feed server supplies articles through the real poller; the sandbox
receiver verifies every POST with the `standardwebhooks` library and is scripted to
fail. The runtime's clock is a FixedClock moved by the tests; the webhook-timestamp
comes from `Runtime.wall`, the real clock the receiver checks it against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from aggregator import attention, endpoints, fetch
from aggregator.cli.poll import status_doc
from aggregator.db import unit_of_work
from aggregator.endpoints import NewEndpoint
from aggregator.models import Filters, SubscriberState
from aggregator.poller import CycleReport, MemberReport
from aggregator.sandbox.feed_server import FeedServer
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from aggregator.settings import WebhookSettings
from notifiers import webhook_payload
from notifiers.operator_report import AttentionKind
from notifiers.webhook import WebhookTransport
from tests.support.builders import member
from tests.support.clock import FixedClock
from tests.support.feeds import Item
from tests.support.webhooks import (
    WebhookWorld,
    article,
    body_of,
    requests_for,
    signatures,
    verifies,
    webhook_settings,
    webhook_world,
)

HOUR = 3600.0
DAY = 24 * HOUR
START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # the `clock` fixture's start
OLD = article(1, "チャットボットの振り返り", START - timedelta(days=10))


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


@pytest.fixture
async def world(
    tmp_path: Path,
    feed_server: FeedServer,
    receiver: WebhookReceiver,
    clock: FixedClock,
) -> AsyncIterator[WebhookWorld]:
    members = (
        member(
            "city",
            feed_server.url("/city.xml"),
            name="テスト市",
            prefecture="東京都",
            tags=("chatbot",),
        ),
        member("town", feed_server.url("/town.xml"), name="テスト町"),
    )
    config = webhook_settings(tmp_path, members)
    async with webhook_world(config, feed_server, receiver, clock) as w:
        w.serve("city", OLD)
        w.serve("town")
        yield w


async def started(world: WebhookWorld) -> NewEndpoint:
    """Baseline polled (OLD, never sent), an endpoint added, an hour later."""
    await world.poll()
    added = world.add_endpoint()
    world.clock.advance(HOUR)
    return added


async def one_due(world: WebhookWorld) -> NewEndpoint:
    """An endpoint with one new article due for it."""
    added = await started(world)
    world.serve("city", article(2, "議事録要約の試行", at(0.5)), OLD)
    await world.poll()
    return added


def city(report: CycleReport) -> MemberReport:
    return next(m for m in report.members if m.member_id == "city")


# --- what is delivered ----------------------------------------------------------------


async def test_only_a_new_article_is_posted_verified_and_schema_valid(
    world: WebhookWorld,
) -> None:
    added = await started(world)
    assert (await world.deliver()).results == ()  # the baseline sends nothing
    new = article(2, "議事録要約の試行", at(0.5))
    world.serve("city", new, OLD)
    assert city(await world.poll()).new == 1

    report = await world.deliver()
    assert report.count("sent") == 1
    [request] = world.receiver.requests
    assert (request.verified, request.status) == (True, 200)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("Kairan")
    document = body_of(request)
    jsonschema.validate(document, webhook_payload.schema())
    [row] = world.rows()
    assert document["type"] == "article.created"
    assert document["data"]["id"] == world.atom_id(row.entry_id)
    assert document["data"]["title"] == "議事録要約の試行"
    assert document["data"]["url"] == new.url
    assert document["data"]["member"] == {
        "id": "city",
        "name": "テスト市",
        "prefecture": "東京都",
        "tags": ["chatbot"],
    }
    assert (row.subscriber_id, row.channel, row.state) == (
        added.subscriber.id,
        "webhook",
        "sent",
    )
    assert row.attempts == 1
    assert row.message_id == request.webhook_id
    assert row.message_id is not None
    assert row.message_id.startswith("msg_")

    world.clock.advance(HOUR)
    world.serve("city", article(2, "議事録要約の試行（改訂）", at(0.5)), OLD)
    assert city(await world.poll()).edited == 1
    assert (await world.deliver()).results == ()  # an edit is not news
    assert len(world.receiver.requests) == 1
    assert len(world.rows()) == 1


async def test_filters_and_the_time_of_adding_decide_who_gets_an_article(
    world: WebhookWorld,
) -> None:
    await world.poll()
    town_only = world.add_endpoint(
        world.receiver.url + "town", Filters(members=("town",))
    )
    everything = world.add_endpoint(world.receiver.url + "all")
    world.clock.advance(HOUR)
    world.serve("city", article(2, "市の記事", at(0.5)), OLD)
    world.serve("town", article(3, "町の記事", at(0.6)))
    await world.poll()
    # Added after both articles appeared; a third, published before it was added
    # but found only now, is not for it either.
    late = world.add_endpoint(world.receiver.url + "late")
    world.clock.advance(HOUR)
    world.serve(
        "town", article(4, "町の古い記事", at(0.8)), article(3, "町の記事", at(0.6))
    )
    await world.poll()

    assert (await world.deliver()).count("sent") == 5
    got = sorted((r.path, body_of(r)["data"]["title"]) for r in world.receiver.accepted)
    assert got == [
        ("/all", "市の記事"),
        ("/all", "町の古い記事"),
        ("/all", "町の記事"),
        ("/town", "町の古い記事"),
        ("/town", "町の記事"),
    ]
    assert world.rows(late.subscriber.id) == []
    assert {r.subscriber_id for r in world.rows()} == {
        town_only.subscriber.id,
        everything.subscriber.id,
    }


# --- failures and retries -------------------------------------------------------------


async def test_500_then_200_is_one_delivery_with_the_same_id_and_bytes(
    world: WebhookWorld,
) -> None:
    await one_due(world)
    world.receiver.fail_next(500)
    [failed] = (await world.deliver()).results
    assert failed.outcome == "retry"
    assert failed.error == "HTTP 500"
    [row] = world.rows()
    assert (row.state, row.attempts) == ("retry", 1)
    # The schedule's second step (5 s) with ±10% jitter.
    assert world.later(4.5) <= row.due_at <= world.later(5.5)

    world.clock.advance(4)
    assert (await world.deliver()).results == ()  # not due yet
    world.clock.advance(2)
    assert (await world.deliver()).count("sent") == 1

    first, second = world.receiver.requests
    assert (first.status, second.status) == (500, 200)
    assert first.verified
    assert second.verified
    assert first.webhook_id == second.webhook_id == row.message_id
    assert first.body == second.body
    assert world.receiver.accepted_ids() == [row.message_id]
    [row] = world.rows()
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, None)


async def test_a_timeout_is_retried_then_delivered(world: WebhookWorld) -> None:
    await one_due(world)
    world.receiver.delay_next(0.8)  # longer than webhooks.timeout = 0.5
    [late] = (await world.deliver()).results
    assert late.outcome == "retry"
    assert late.error == "timed out after 0.5 s"
    [row] = world.rows()
    assert (row.state, row.last_error) == ("retry", "timed out after 0.5 s")

    world.clock.advance(6)
    assert (await world.deliver()).count("sent") == 1
    [accepted] = await world.receiver.wait_for(1)
    assert accepted.webhook_id == row.message_id
    [row] = world.rows()
    assert (row.state, row.attempts) == ("sent", 2)


async def test_410_disables_the_endpoint_and_cancels_what_it_had_waiting(
    world: WebhookWorld,
) -> None:
    added = await one_due(world)
    world.receiver.fail_next(500)
    await world.deliver()  # the first article waits for its retry
    world.serve(
        "city", article(3, "二件目", at(0.7)), article(2, "一件目", at(0.5)), OLD
    )
    await world.poll()
    world.receiver.fail_next(410, body=b"endpoint removed")
    [gone] = (await world.deliver()).results  # only the new article is due
    assert gone.outcome == "failed"
    assert gone.error == "HTTP 410: endpoint removed"

    endpoint = world.subscriber(added.subscriber.id)
    assert endpoint.state is SubscriberState.DISABLED
    assert endpoint.state_reason == "gone: HTTP 410: endpoint removed"
    first, second = world.rows()
    assert (first.state, second.state) == ("cancelled", "failed")
    assert first.last_error == "endpoint disabled: gone: HTTP 410: endpoint removed"

    world.clock.advance(DAY)
    world.serve("city", article(4, "三件目", at(20)), OLD)
    await world.poll()
    assert (await world.deliver()).results == ()
    assert len(world.receiver.requests) == 2
    assert len(world.rows()) == 2  # a disabled endpoint is not enqueued for

    with unit_of_work(world.db):
        enabled = endpoints.enable(world.db, added.subscriber.id, world.clock.now())
    assert enabled.state is SubscriberState.ACTIVE
    assert enabled.failing_since is None


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("3600", 3600), ("864000", 86400)],  # 10 days are capped at 24 h
    ids=["an-hour", "capped-at-a-day"],
)
async def test_429_waits_as_long_as_retry_after_says(
    world: WebhookWorld, retry_after: str, wait: int
) -> None:
    await one_due(world)
    world.receiver.fail_next(429, retry_after=retry_after)
    [result] = (await world.deliver()).results
    assert result.outcome == "retry"
    [row] = world.rows()
    assert row.state == "retry"
    assert abs((row.due_at - world.later(wait)).total_seconds()) <= 2
    world.clock.advance(wait - 10)
    assert (await world.deliver()).results == ()  # not after the 5 s step
    world.clock.advance(20)
    assert (await world.deliver()).count("sent") == 1


async def test_a_redirect_is_not_followed(world: WebhookWorld) -> None:
    await one_due(world)
    with WebhookReceiver() as elsewhere:
        elsewhere.secrets[:] = world.receiver.secrets
        world.receiver.redirect_next(elsewhere.url + "moved")
        [result] = (await world.deliver()).results
        assert elsewhere.requests == []
    assert result.outcome == "retry"
    assert result.error == f"HTTP 302: redirect to {elsewhere.url}moved not followed"
    [request] = world.receiver.requests
    assert request.status == 302
    assert world.rows()[0].state == "retry"


async def test_a_huge_response_body_is_not_read_and_counts_as_sent(
    world: WebhookWorld,
) -> None:
    await one_due(world)
    world.receiver.huge_body_next(50_000_000)
    assert (await world.deliver()).count("sent") == 1
    [row] = world.rows()
    assert (row.state, row.attempts) == ("sent", 1)


async def test_an_endpoint_failing_for_5_days_is_disabled_and_reported(
    world: WebhookWorld,
) -> None:
    added = await started(world)
    world.receiver.fail_next(500, 1000)
    items: list[Item] = [OLD]
    outcomes: list[list[str]] = []
    # The first failure is at 04:00 on day 0; the last pass, 5 days later, finds
    # only the newest article due (the one before waits 5 s for its retry).
    steps = [0, DAY, DAY, DAY, DAY, DAY - 2, 2]
    for n, step in enumerate(steps):
        world.clock.advance(step)
        items.insert(0, article(10 + n, f"{n}件目", world.clock.now()))
        world.serve("city", *items)
        await world.poll()
        outcomes.append([r.outcome for r in (await world.deliver()).results])

    # Every pass before retries each earlier article and fails it again.
    assert outcomes[:-1] == [["retry"] * n for n in range(1, 7)]
    assert outcomes[-1] == ["failed"]
    endpoint = world.subscriber(added.subscriber.id)
    assert endpoint.state is SubscriberState.DISABLED
    assert endpoint.state_reason == "failing since 2026-12-01 04:00 UTC: HTTP 500"
    *unsent, last = world.rows()
    assert (last.state, last.last_error) == ("failed", "HTTP 500")
    assert len(unsent) == 6
    assert {(r.state, r.last_error) for r in unsent} == {
        ("failed", f"endpoint disabled: {endpoint.state_reason}")
    }
    sent_before = len(world.receiver.requests)
    assert sent_before == sum(map(len, outcomes))
    assert {r.status for r in world.receiver.requests} == {500}

    [item] = attention.gather(world.db, world.rt.settings, world.clock.now())
    assert item.kind is AttentionKind.WEBHOOK_DISABLED
    assert world.receiver.url in item.subject
    assert "failing since" in item.detail
    doc = status_doc(world.rt)  # what `kairan status` shows
    assert [a["kind"] for a in doc["attention"]] == [str(item.kind)]
    world.clock.advance(DAY)
    assert (await world.deliver()).results == ()
    assert len(world.receiver.requests) == sent_before


async def test_a_success_in_between_starts_the_5_days_over(
    world: WebhookWorld,
) -> None:
    added = await one_due(world)
    world.receiver.fail_next(500)
    await world.deliver()
    assert world.subscriber(added.subscriber.id).failing_since == world.clock.now()
    world.clock.advance(DAY)
    assert (await world.deliver()).count("sent") == 1  # the retry gets through
    assert world.subscriber(added.subscriber.id).failing_since is None

    world.clock.advance(4 * DAY + HOUR)  # 5 days after the first failure
    world.serve("city", article(3, "二件目", world.clock.now()), OLD)
    await world.poll()
    world.receiver.fail_next(500)
    [result] = (await world.deliver()).results
    assert result.outcome == "retry"
    endpoint = world.subscriber(added.subscriber.id)
    assert endpoint.state is SubscriberState.ACTIVE
    assert endpoint.failing_since == world.clock.now()


# --- signing secrets ------------------------------------------------------------------


async def test_a_rotation_signs_with_both_secrets_then_only_the_new_one(
    world: WebhookWorld,
) -> None:
    added = await one_due(world)
    old = added.secret
    with unit_of_work(world.db):
        rotation = endpoints.rotate_secret(
            world.db, added.subscriber.id, world.clock.now(), timedelta(hours=2)
        )
    new = rotation.secret
    assert rotation.old_until == world.later(2 * HOUR)
    world.receiver.secrets[:] = [old]  # a receiver that has not switched yet
    assert (await world.deliver()).count("sent") == 1
    [both] = world.receiver.accepted
    assert len(signatures(both)) == 2
    assert verifies(both, old)
    assert verifies(both, new)

    world.receiver.secrets[:] = [new]  # a receiver that has switched
    world.serve("city", article(3, "二件目", at(0.7)), OLD)
    await world.poll()
    assert (await world.deliver()).count("sent") == 1
    assert len(world.receiver.accepted) == 2

    world.clock.advance(2 * HOUR + 1)  # the overlap is over
    world.receiver.secrets[:] = [old]
    world.serve("city", article(4, "三件目", at(2)), OLD)
    await world.poll()
    [refused] = (await world.deliver()).results
    request = world.receiver.requests[-1]
    assert (request.status, request.verified) == (401, False)
    assert len(signatures(request)) == 1
    assert verifies(request, new)
    assert not verifies(request, old)
    # Only 408, 429 and 5xx are retried (notifiers/webhook.py): a 401 fails, and
    # `kairan deliveries retry` sends it again once the receiver is fixed.
    assert refused.outcome == "failed"
    assert refused.error is not None
    assert refused.error.startswith("HTTP 401")
    assert world.rows()[-1].state == "failed"


# --- the SSRF guard at connect time ---------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(
    world: WebhookWorld,
) -> None:
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]  # what a hostile name answers once it was accepted

    guarded = WebhookTransport(
        WebhookSettings(timeout=0.5),  # allow_private_addresses = false
        fetch.user_agent(world.rt.settings.poll, world.rt.settings.site),
        resolver=rebinding,
    )
    await world.poll()
    added = world.add_endpoint(f"http://hook.test:{world.receiver.port}/")
    world.clock.advance(HOUR)
    world.serve("city", article(2, "議事録要約の試行", at(0.5)), OLD)
    await world.poll()
    async with guarded:
        [result] = (await world.deliver(poster=guarded)).results
    assert lookups == ["hook.test"]
    assert result.outcome == "failed"
    assert result.error is not None
    assert result.error.startswith(
        "hook.test: resolved address 127.0.0.1 is a loopback"
    )
    assert world.receiver.requests == []
    [row] = world.rows(added.subscriber.id)
    assert (row.state, row.attempts) == ("failed", 1)
    assert requests_for(world.receiver, row.message_id or "") == []
