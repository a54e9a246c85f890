"""Tell a WebSub hub that feeds changed (W3C WebSub §5: the publisher's ping).

The spec leaves the publish request to the hub; every public hub takes the
PubSubHubbub form, a POST of ``hub.mode=publish`` and one ``hub.url`` per topic.
A failed ping never fails a publish: it is retried a few times, then logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import httpx

from aggregator import logs

log = logs.get("websub")

RETRY_WAITS = (1.0, 5.0)  # seconds before the 2nd and 3rd attempt
Sleep = Callable[[float], Awaitable[None]]


async def ping(
    hub: str,
    topics: Sequence[str],
    *,
    user_agent: str,
    seconds: float = 15.0,
    sleep: Sleep = asyncio.sleep,
) -> str | None:
    """POST the changed topics to the hub (each attempt at most `seconds`);
    None when it accepted them, else the last error."""
    if not topics:
        return None
    form: dict[str, str | list[str]] = {"hub.mode": "publish", "hub.url": [*topics]}
    error = None
    # trust_env=False: a proxy from the environment must not see (or redirect) this.
    async with httpx.AsyncClient(
        timeout=seconds, trust_env=False, headers={"User-Agent": user_agent}
    ) as client:
        for attempt, wait in enumerate((0.0, *RETRY_WAITS), start=1):
            if wait:
                await sleep(wait)
            error = await _attempt(client, hub, form)
            if error is None:
                log.info("websub.ping", extra=logs.fields(hub=hub, topics=len(topics)))
                return None
            log.warning(
                "websub.retry" if attempt <= len(RETRY_WAITS) else "websub.failed",
                extra=logs.fields(hub=hub, attempt=attempt, error=error),
            )
    return error


async def _attempt(
    client: httpx.AsyncClient, hub: str, form: dict[str, str | list[str]]
) -> str | None:
    try:
        response = await client.post(hub, data=form)
    except httpx.HTTPError as e:
        return (
            f"{hub}: {type(e).__name__}: {e}"
            if str(e)
            else f"{hub}: {type(e).__name__}"
        )
    # 2xx (hubs answer 202 or 204); a redirect is not followed: it is a failure.
    return None if response.is_success else f"{hub}: HTTP {response.status_code}"
