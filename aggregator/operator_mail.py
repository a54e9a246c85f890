"""The operator's daily report: what needs attention, mailed only if anything does."""

from __future__ import annotations

from datetime import datetime

from aggregator import attention, compose, logs
from aggregator.mail_channel import Mailer
from aggregator.runtime import Runtime
from notifiers import operator_report

log = logs.get("operator")


async def send_report(rt: Runtime, now: datetime, mailer: Mailer | None = None) -> int:
    """Mail `[operator] email` the attention list; returns how many items it had.

    Nothing is sent without an address or without anything to report: a quiet
    day sends no mail, so a mail always means there is something to do. SMTP
    unless a mailer is given.
    """
    settings = rt.settings
    recipient = settings.operator.email
    if recipient is None:
        return 0
    items = attention.gather(rt.db, settings, now)
    if not items:
        return 0
    rt.require_sender()
    report = operator_report.OperatorReport(
        settings.site.title, now, settings.site.tz, tuple(items)
    )
    message = operator_report.report_message(
        report,
        settings.email.from_address,
        recipient,
        f"<health-{now:%Y%m%d}@{compose.site_host(settings)}>",
    )
    if mailer is None:
        async with rt.smtp() as smtp:
            await smtp.send(settings.email.from_address, recipient, message)
    else:
        await mailer.send(settings.email.from_address, recipient, message)
    log.info("operator.reported", extra=logs.fields(items=len(items)))
    return len(items)
