"""Fetch and parse one URL once: `members add` refuses what is not a feed."""

from __future__ import annotations

import asyncio

from aggregator import fetch, parse
from aggregator.clock import Clock
from aggregator.errors import NotAFeedError
from aggregator.hostlimits import HostLimits
from aggregator.models import Fetched, FetchRequest, ParsedFeed
from aggregator.settings import Settings


async def probe_feed(
    settings: Settings, member_id: str, url: str, clock: Clock
) -> ParsedFeed:
    poll = settings.poll
    async with fetch.build_client(poll, settings.site) as client:
        result = await fetch.fetch(
            client, HostLimits(1, 1), FetchRequest(member_id, url), poll, clock
        )
    if not isinstance(result, Fetched):  # an unconditional GET cannot get a 304
        raise NotAFeedError(member_id, url, "the server answered 304 without a request")
    return await asyncio.to_thread(
        parse.parse_feed, result.body, result.content_type, result.url, member_id
    )
