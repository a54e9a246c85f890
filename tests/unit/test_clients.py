"""fetch.Clients: small pools, one per member, sized from poll.concurrency."""

from __future__ import annotations

from aggregator.fetch import POOL_CONNECTIONS, Clients
from aggregator.settings import PollSettings, SiteSettings


async def test_pools_are_small_and_a_member_keeps_its_pool() -> None:
    async with Clients(PollSettings(concurrency=12), SiteSettings()) as clients:
        pools = {id(clients.for_key(f"member-{n}")) for n in range(200)}
        assert len(pools) == 3  # ceil(12 / 5) pools of 4 connections
        assert clients.for_key("kobe") is clients.for_key("kobe")


async def test_one_pool_when_concurrency_is_small() -> None:
    async with Clients(
        PollSettings(concurrency=POOL_CONNECTIONS), SiteSettings()
    ) as clients:
        assert clients.for_key("a") is clients.for_key("b")
