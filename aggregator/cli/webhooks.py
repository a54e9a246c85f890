"""`kairan subscribers add --webhook`, `rotate-secret`, `test`, `enable`: endpoints."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from aggregator import compose, endpoints, outbox, subscribers
from aggregator.cli.context import local_time, open_runtime, state
from aggregator.cli.subscriber_options import Choice, Given, option_name, resolve
from aggregator.config_values import parse_duration
from aggregator.db import unit_of_work
from aggregator.errors import ConfigError, UsageError
from aggregator.models import Subscriber
from aggregator.runtime import Runtime
from aggregator.timefmt import to_db
from notifiers import webhook_payload
from notifiers.errors import DeliveryError
from notifiers.webhook import WebhookResponse

SHOWN_ONCE = (
    "the secret is shown this once: give it to the receiver, which verifies "
    "the webhook-signature header with it (Standard Webhooks)"
)
EXCERPT = 300  # characters of a test response shown
Endpoint = Annotated[
    str, typer.Argument(metavar="ID|URL", help="A webhook subscriber id or URL.")
]


def register(app: typer.Typer) -> None:
    app.command("rotate-secret")(rotate_secret)
    app.command("test")(test)
    app.command("enable")(enable)


def named(subscriber: Subscriber) -> str:
    return f"webhook subscriber {subscriber.id} ({subscriber.address})"


def endpoint_doc(rt: Runtime, s: Subscriber) -> dict[str, Any]:
    """What `subscribers show` adds for a webhook (times in UTC)."""
    expiries = endpoints.secret_expiries(rt.db, s.id, rt.clock.now())
    return {
        "url": s.address,
        "failing_since": to_db(s.failing_since),
        "secrets": [{"expires_at": to_db(when)} for when in expiries],
    }


def add_webhook(ctx: typer.Context, url: str, given: Given, origin: str) -> None:
    """`subscribers add --webhook URL`: active at once, its secret printed once."""
    settings = state(ctx).settings()
    checked = endpoints.checked_url(url, settings)
    choice = resolve(given, Choice.defaults(settings), settings, option_name)
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        added = endpoints.add(
            rt.db, checked, choice.filters, settings, rt.key, rt.clock.now(), origin
        )
    filters = compose.describe_filters(choice.filters, "en")
    typer.echo(f"added {named(added.subscriber)}, active: {filters}")
    typer.echo(f"secret: {added.secret}")
    typer.echo(SHOWN_ONCE)


def _endpoint(rt: Runtime, who: str) -> Subscriber:
    return endpoints.require_webhook(rt.db, subscribers.find(rt.db, who).id)


def rotate_secret(
    ctx: typer.Context,
    who: Endpoint,
    overlap: Annotated[
        str | None,
        typer.Option(
            "--overlap",
            metavar="DURATION",
            help="How long the old secret keeps signing too, e.g. 24h "
            "(default: [webhooks] secret_overlap).",
        ),
    ] = None,
) -> None:
    """Give an endpoint a new signing secret; the old one signs beside it a while."""
    settings = state(ctx).settings()
    seconds = (
        settings.webhooks.secret_overlap
        if overlap is None
        else _duration(overlap, "--overlap")
    )
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber = _endpoint(rt, who)
        rotation = endpoints.rotate_secret(
            rt.db, subscriber.id, rt.clock.now(), timedelta(seconds=seconds)
        )
        until = local_time(rotation.old_until, settings.site.tz)
    typer.echo(f"rotated the secret of {named(subscriber)}")
    typer.echo(f"secret: {rotation.secret}")
    typer.echo(
        f"both secrets sign until {until} ({settings.site.timezone}); "
        "switch the receiver to the new one before then"
    )


def _duration(text: str, option: str) -> int:
    try:
        return parse_duration(text, option, Path(option))
    except ConfigError as e:
        raise UsageError(f"{option}: {e.problem}") from None


def test(ctx: typer.Context, who: Endpoint) -> None:
    """Send a signed `ping` event to an endpoint now and show its answer."""
    with open_runtime(ctx) as rt:
        subscriber = _endpoint(rt, who)
        secrets = endpoints.live_secrets(rt.db, subscriber.id, rt.clock.now())
        message_id = outbox.new_message_id("webhook", compose.site_host(rt.settings))
        try:
            response = asyncio.run(_ping(rt, subscriber, message_id, secrets))
        except DeliveryError as e:
            raise UsageError(f"{named(subscriber)}: {e}") from None
    typer.echo(
        f"HTTP {response.status} from {subscriber.address} in "
        f"{response.seconds:.2f} s (webhook-id {message_id})"
    )
    text = response.body.decode("utf-8", "replace").strip()
    if text:
        typer.echo(text[:EXCERPT] + ("…" if len(text) > EXCERPT else ""))


async def _ping(
    rt: Runtime, subscriber: Subscriber, message_id: str, secrets: tuple[str, ...]
) -> WebhookResponse:
    sent_at = rt.wall.now()
    async with rt.webhook_transport() as transport:
        return await transport.post(
            subscriber.address,
            message_id,
            webhook_payload.ping_body(sent_at),
            secrets,
            sent_at,
        )


def enable(ctx: typer.Context, who: Endpoint) -> None:
    """Turn a disabled endpoint back on (after a 410 or days of failures)."""
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber = endpoints.enable(rt.db, _endpoint(rt, who).id, rt.clock.now())
    typer.echo(
        f"enabled {named(subscriber)}; deliveries that failed meanwhile: "
        f"`kairan deliveries retry --failed --subscriber {subscriber.id}`"
    )
