"""Global and per-host concurrency limits for feed requests (asyncio semaphores)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit


class HostLimits:
    """At most ``total`` requests in flight, and at most ``per_host`` to one host.

    Many members share a host (every note.com creator is on note.com), so politeness
    is per host, not per member. One semaphore per host seen; the set of hosts is
    bounded by the configured members, so it is never pruned.
    """

    def __init__(self, total: int, per_host: int) -> None:
        if total < 1 or per_host < 1:
            raise ValueError("limits must be at least 1")
        self._total = asyncio.Semaphore(total)
        self._per_host = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def slot(self, url: str) -> AbstractAsyncContextManager[None]:
        """Hold one request slot for ``url``'s host for the duration of the block."""
        host = _host(url)
        semaphore = self._hosts.get(host)
        if semaphore is None:
            semaphore = self._hosts[host] = asyncio.Semaphore(self._per_host)
        return _hold(semaphore, self._total)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # a malformed URL; the request itself will say what is wrong
        return ""


@asynccontextmanager
async def _hold(
    host: asyncio.Semaphore, total: asyncio.Semaphore
) -> AsyncIterator[None]:
    # The host slot first: a request queued behind a busy host must not sit on a
    # global slot that a request to an idle host could use meanwhile.
    async with host, total:
        yield
