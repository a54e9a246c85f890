"""`kairan digest preview`: a subscriber's next mail, rendered; nothing changes."""

from __future__ import annotations

from typing import Annotated

import typer

from aggregator import compose, mail_channel, outbox_view, store, subscribers
from aggregator.cli.context import open_runtime
from aggregator.errors import UsageError
from aggregator.models import SubscriberKind
from notifiers import render
from notifiers.mail import MailRequest

app = typer.Typer(no_args_is_help=True, help="Preview what subscribers will receive.")
FORMATS = ("text", "html", "eml")


@app.command("preview")
def preview(
    ctx: typer.Context,
    who: Annotated[
        str,
        typer.Argument(metavar="SUBSCRIBER", help="A subscriber id or address."),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="text|html|eml",
            help="text: the subject and the text part; html: the HTML part; "
            "eml: the whole message as it would be sent.",
        ),
    ] = "text",
) -> None:
    """Render the subscriber's next mail: every article not sent to it yet.

    Nothing is sent and nothing changes; the Message-ID is a placeholder and the
    Date is now. The links are the subscriber's real ones (unsubscribe works).
    """
    if output not in FORMATS:
        raise UsageError(f"--format: must be text, html or eml, got {output!r}")
    with open_runtime(ctx) as rt:
        subscriber = subscribers.find(rt.db, who)
        if subscriber.kind is not SubscriberKind.EMAIL:
            raise UsageError(f"subscriber {subscriber.id} is a webhook, not e-mail")
        ids = outbox_view.unsent_entries(rt.db, subscriber.id)
        entries = [store.get_entry(rt.db, i) for i in ids]
        if not entries:
            typer.echo(
                f"nothing to preview: no unsent articles for subscriber "
                f"{subscriber.id} ({subscriber.address}, {subscriber.state})"
            )
            return
        request = mail_channel.request_for(
            rt.settings,
            rt.key,
            subscriber,
            str(subscriber.schedule.cadence),
            f"<preview@{compose.site_host(rt.settings)}>",
            rt.clock.now().replace(microsecond=0),
            entries,
            compose.members_by_id(rt.settings),
        )
    show(request, output)


def show(request: MailRequest, output: str) -> None:
    if output == "eml":
        typer.echo(mail_channel.message_bytes(request), nl=False)
        return
    rendered = render.render(request)
    if output == "html":
        typer.echo(rendered.html, nl=not rendered.html.endswith("\n"))
        return
    typer.echo(f"Subject: {rendered.subject}\n")
    typer.echo(rendered.text, nl=not rendered.text.endswith("\n"))
