"""`kairan subscribers …`: e-mail followers, their settings, consent and state."""

from __future__ import annotations

import getpass
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from aggregator import compose, optin, outbox, outbox_view, subscribers
from aggregator.addresses import normalize_email
from aggregator.cli import webhooks
from aggregator.cli.context import (
    JSON,
    local_time,
    open_runtime,
    plural,
    print_json,
    print_table,
    state,
)
from aggregator.cli.subscriber_options import (
    Choice,
    Given,
    HourOption,
    KeywordOption,
    LanguageOption,
    MemberOption,
    ScheduleOption,
    TagOption,
    TimezoneOption,
    WeekdayOption,
    option_name,
    resolve,
    schedule_text,
    state_of,
    weekday_code,
)
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import (
    ConsentSource,
    Filters,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.timefmt import from_db, to_db

app = typer.Typer(no_args_is_help=True, help="List and manage e-mail subscribers.")
REMOVED_REASON = "removed by operator"
Who = Annotated[
    str, typer.Argument(metavar="ID|EMAIL", help="A subscriber id or address.")
]


# --- showing a subscriber --------------------------------------------------------


def named(subscriber: Subscriber) -> str:
    return f"subscriber {subscriber.id} ({subscriber.address})"


def summary(subscriber: Subscriber) -> str:
    return (
        f"{schedule_text(subscriber.schedule)} {subscriber.timezone}, "
        f"{subscriber.language}, {compose.describe_filters(subscriber.filters, 'en')}"
    )


def subscriber_doc(s: Subscriber) -> dict[str, Any]:
    """The JSON of `list`, `show` and `export --json`; times in UTC."""
    return {
        "id": s.id,
        "kind": str(s.kind),
        ("email" if s.kind is SubscriberKind.EMAIL else "url"): s.address,
        "state": str(s.state),
        "schedule": str(s.schedule.cadence),
        "hour": s.schedule.hour,
        "weekday": weekday_code(s.schedule.weekday),
        "timezone": s.timezone,
        "language": s.language,
        "members": list(s.filters.members),
        "tags": list(s.filters.tags),
        "keywords": list(s.filters.keywords),
        "created_at": to_db(s.created_at),
        "confirmed_at": to_db(s.confirmed_at),
        "notify_since": to_db(s.notify_since),
        "consent_at": to_db(s.consent_at),
        "consent_source": str(s.consent_source),
        "consent_origin": s.consent_origin,
        "hard_bounces": s.hard_bounces,
        "state_reason": s.state_reason,
    }


# --- creating subscribers ----------------------------------------------------------


def create(
    rt: Runtime, new: subscribers.NewSubscriber, now: datetime
) -> tuple[Subscriber, datetime | None]:
    """Insert one subscriber; a pending one gets its confirmation mail queued.

    Returns the subscriber and, when pending, when its confirmation link
    expires. Call inside the caller's unit of work: the subscriber, the
    confirmation token and the outbox row commit together or not at all.
    """
    subscriber = subscribers.add(rt.db, new, rt.key, now)
    if new.confirmed:
        return subscriber, None
    ttl = timedelta(seconds=rt.settings.email.confirm_ttl)
    expires = optin.issue_confirmation(rt.db, subscriber.id, rt.key, now, ttl)
    outbox.enqueue_confirmation(rt.db, subscriber.id, now)
    return subscriber, expires


def new_subscriber(
    address: str,
    choice: Choice,
    *,
    confirmed: bool,
    source: ConsentSource,
    origin: str,
) -> subscribers.NewSubscriber:
    return subscribers.NewSubscriber(
        kind=SubscriberKind.EMAIL,
        address=address,
        schedule=choice.schedule,
        filters=choice.filters,
        timezone=choice.timezone,
        language=choice.language,
        confirmed=confirmed,
        consent_source=source,
        consent_origin=origin,
    )


def operator() -> str:
    """Who typed the command, for the consent record."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no login name, no passwd entry
        return "unknown"


def pending_note(settings: Settings, count: int, expires: datetime) -> str:
    mails = "the confirmation mail is" if count == 1 else "the confirmation mails are"
    note = (
        f"{mails} queued: the next `kairan deliver` (or the daemon) sends "
        f"{'it' if count == 1 else 'them'}; the link works until "
        f"{local_time(expires, settings.site.tz)} ({settings.site.timezone})"
    )
    if not settings.email.from_address:
        note += f"\nnote: set [email] from in {settings.path} before sending"
    return note


@app.command("add")
def add(
    ctx: typer.Context,
    email: Annotated[
        str | None, typer.Argument(metavar="EMAIL", show_default=False)
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            metavar="URL",
            help="Add a webhook endpoint instead: one signed POST per new article.",
        ),
    ] = None,
    schedule: ScheduleOption = None,
    hour: HourOption = None,
    weekday: WeekdayOption = None,
    members: MemberOption = None,
    tags: TagOption = None,
    keywords: KeywordOption = None,
    timezone: TimezoneOption = None,
    language: LanguageOption = None,
    confirmed: Annotated[
        bool,
        typer.Option(
            "--confirmed",
            help="Consent was given already: active at once, no confirmation mail.",
        ),
    ] = False,
) -> None:
    """Add a subscriber: pending until it follows the link of a confirmation mail.

    With --webhook URL: an endpoint, active at once; its signing secret is
    printed once.
    """
    given = Given(schedule, hour, weekday, members, tags, keywords, timezone, language)
    if webhook is not None:
        if email is not None:
            raise UsageError("give an EMAIL or --webhook URL, not both")
        refuse_mail_options(given, confirmed)
        webhooks.add_webhook(ctx, webhook, given, f"cli:{operator()}")
        return
    if email is None:
        raise UsageError("give an EMAIL, or --webhook URL")
    settings = state(ctx).settings()
    address = normalize_email(email)
    choice = resolve(given, Choice.defaults(settings), settings, option_name)
    new = new_subscriber(
        address,
        choice,
        confirmed=confirmed,
        source=ConsentSource.CLI,
        origin=f"cli:{operator()}",
    )
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber, expires = create(rt, new, rt.clock.now())
    typer.echo(f"added {named(subscriber)}, {subscriber.state}: {summary(subscriber)}")
    if expires is not None:
        typer.echo(pending_note(settings, 1, expires))


def refuse_mail_options(given: Given, confirmed: bool) -> None:
    """A webhook gets every matching article at once, in no language or zone."""
    mail_only = {
        "--schedule": given.schedule,
        "--hour": given.hour,
        "--weekday": given.weekday,
        "--timezone": given.timezone,
        "--language": given.language,
        "--confirmed": confirmed or None,
    }
    for option, value in mail_only.items():
        if value is not None:
            raise UsageError(f"{option} is for e-mail subscribers, not --webhook")


# --- listing -------------------------------------------------------------------------


@app.command("list")
def list_subscribers(
    ctx: typer.Context,
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="S",
            help="Only this state (repeatable): pending, active, paused, "
            "unsubscribed, bouncing, disabled.",
        ),
    ] = None,
    list_webhooks: Annotated[
        bool, typer.Option("--webhooks", help="The webhook endpoints instead.")
    ] = False,
    as_json: JSON = False,
) -> None:
    """The e-mail subscribers (or, with --webhooks, the endpoints), oldest first."""
    wanted = [state_of(s) for s in states or ()]
    kind = SubscriberKind.WEBHOOK if list_webhooks else SubscriberKind.EMAIL
    with open_runtime(ctx) as rt:
        found = subscribers.list_subscribers(rt.db, wanted, kind)
        others = subscribers.list_subscribers(rt.db, wanted, SubscriberKind.WEBHOOK)
        tz = rt.settings.site.tz
    if as_json:
        print_json([subscriber_doc(s) for s in found])
        return
    if list_webhooks:
        list_endpoints(found, tz)
        return
    if not found:
        typer.echo("no subscribers")
    if others:
        typer.echo(
            f"and {plural(len(others), 'webhook endpoint', 'webhook endpoints')}: "
            "`kairan subscribers list --webhooks`"
        )
    if not found:
        return
    headers = ["id", "email", "state", "schedule", "filters", "timezone", "language"]
    print_table(
        [*headers, "created"],
        [
            (
                s.id,
                s.address,
                s.state,
                schedule_text(s.schedule),
                compose.describe_filters(s.filters, "en"),
                s.timezone,
                s.language,
                local_time(s.created_at, tz),
            )
            for s in found
        ],
    )
    typer.echo(f"created in {tz.key}")


def list_endpoints(found: list[Subscriber], tz: ZoneInfo) -> None:
    if not found:
        typer.echo("no webhook endpoints")
        return
    print_table(
        ["id", "url", "state", "filters", "failing since", "created"],
        [
            (
                s.id,
                s.address,
                s.state,
                compose.describe_filters(s.filters, "en"),
                local_time(s.failing_since, tz, "-"),
                local_time(s.created_at, tz),
            )
            for s in found
        ],
    )
    typer.echo(f"times in {tz.key}")


def delivery_counts(rt: Runtime, subscriber_id: int) -> dict[str, int]:
    counts = Counter(
        d.state for d in outbox_view.list_deliveries(rt.db, subscriber_id=subscriber_id)
    )
    return {name: counts[name] for name in outbox_view.DELIVERY_STATES}


@app.command("show")
def show(ctx: typer.Context, who: Who, as_json: JSON = False) -> None:
    """One subscriber: settings, consent record, state and its deliveries."""
    with open_runtime(ctx) as rt:
        subscriber = subscribers.find(rt.db, who)
        doc = subscriber_doc(subscriber) | {
            "deliveries": delivery_counts(rt, subscriber.id)
        }
        if subscriber.kind is SubscriberKind.WEBHOOK:
            doc |= webhooks.endpoint_doc(rt, subscriber)
        tz = rt.settings.site.tz
    if as_json:
        print_json(doc)
        return
    for key, value in shown_lines(subscriber, doc, tz).items():
        typer.echo(f"{key}: {value}")
    typer.echo(f"times in {tz.key}")


def shown_lines(s: Subscriber, doc: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    counts = ", ".join(f"{k} {n}" for k, n in doc["deliveries"].items() if n)
    head = {"id": s.id, "state": s.state, "state reason": s.state_reason or ""}
    if s.kind is SubscriberKind.WEBHOOK:
        expiries = [from_db(x["expires_at"]) for x in doc["secrets"]]
        return {
            **head,
            "url": s.address,
            "filters": compose.describe_filters(s.filters, "en"),
            "failing since": local_time(s.failing_since, tz, "-"),
            "secrets": ", ".join(
                "current" if when is None else f"old, until {local_time(when, tz)}"
                for when in expiries
            ),
            "created": local_time(s.created_at, tz),
            "notify since": local_time(s.notify_since, tz, "not yet"),
            "deliveries": counts or "none",
        }
    return {
        **head,
        "email": s.address,
        "schedule": schedule_text(s.schedule),
        "filters": compose.describe_filters(s.filters, "en"),
        "timezone": s.timezone,
        "language": s.language,
        "created": local_time(s.created_at, tz),
        "confirmed": local_time(s.confirmed_at, tz, "not yet"),
        "notify since": local_time(s.notify_since, tz, "not yet"),
        "consent": f"{local_time(s.consent_at, tz)} via {s.consent_source}"
        + (f" ({s.consent_origin})" if s.consent_origin else ""),
        "hard bounces": s.hard_bounces,
        "deliveries": counts or "none",
    }


# --- changing ------------------------------------------------------------------------


@app.command("update")
def update(
    ctx: typer.Context,
    who: Who,
    schedule: ScheduleOption = None,
    hour: HourOption = None,
    weekday: WeekdayOption = None,
    members: MemberOption = None,
    tags: TagOption = None,
    keywords: KeywordOption = None,
    timezone: TimezoneOption = None,
    language: LanguageOption = None,
    clear_filters: Annotated[
        bool,
        typer.Option(
            "--clear-filters",
            help="Drop every filter first (then --member, --tag, --keyword apply).",
        ),
    ] = False,
) -> None:
    """Change a subscriber's settings: only the options given change."""
    given = Given(schedule, hour, weekday, members, tags, keywords, timezone, language)
    if given == Given() and not clear_filters:
        raise UsageError("nothing to change: give at least one option (see --help)")
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        current = subscribers.find(rt.db, who)
        base = Choice.of(current)
        if clear_filters:
            base = replace(base, filters=Filters())
        choice = resolve(given, base, rt.settings, option_name)
        changes = subscribers.Changes(
            choice.schedule, choice.filters, choice.timezone, choice.language
        )
        updated = subscribers.update(rt.db, current.id, changes)
        outbox.reschedule_unsent(rt.db, updated, rt.clock.now())
    typer.echo(f"updated {named(updated)}: {summary(updated)}")


@app.command("pause")
def pause(ctx: typer.Context, who: Who) -> None:
    """Stop mailing an active subscriber until `resume`.

    What is queued for it waits; articles that appear meanwhile are not queued.
    """
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber = subscribers.pause(
            rt.db, subscribers.find(rt.db, who).id, rt.clock.now()
        )
    typer.echo(f"paused {named(subscriber)}")


@app.command("resume")
def resume(ctx: typer.Context, who: Who) -> None:
    """Mail a paused or bouncing subscriber again (its bounce count starts over)."""
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber = subscribers.resume(
            rt.db, subscribers.find(rt.db, who).id, rt.clock.now()
        )
    typer.echo(f"resumed {named(subscriber)}")


@app.command("remove")
def remove(
    ctx: typer.Context,
    who: Who,
    forget: Annotated[
        bool,
        typer.Option(
            "--forget",
            help="Erase the subscriber and its deliveries; only a hash of the "
            "address is kept, so that it is never re-added silently.",
        ),
    ] = False,
) -> None:
    """Unsubscribe (cancelling what is not sent yet), or with --forget erase."""
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        subscriber = subscribers.find(rt.db, who)
        now = rt.clock.now()
        done = (erase if forget else unsubscribe)(rt, subscriber, now)
    typer.echo(done)


def erase(rt: Runtime, subscriber: Subscriber, now: datetime) -> str:
    subscribers.forget(rt.db, subscriber.id, now)
    return (
        f"forgot {named(subscriber)}: its data and deliveries are erased; a hash "
        "of the address is kept, so `add` and `import` refuse it"
    )


def unsubscribe(rt: Runtime, subscriber: Subscriber, now: datetime) -> str:
    """Unsubscribe by the operator; says how many deliveries were cancelled."""
    if subscriber.state is SubscriberState.UNSUBSCRIBED:
        raise UsageError(
            f"subscriber {subscriber.id} is already unsubscribed (--forget erases it)"
        )
    unsent = outbox_view.list_deliveries(
        rt.db, outbox_view.UNSENT_STATES, subscriber.id
    )
    subscribers.unsubscribe(rt.db, subscriber.id, now, REMOVED_REASON)
    cancelled = plural(len(unsent), "unsent delivery", "unsent deliveries")
    return f"unsubscribed {named(subscriber)}; cancelled {cancelled}"
