"""Where parsing runs: worker processes (the spare cores), or a thread.

feedparser is pure Python and holds the GIL: in a thread it only takes turns with
the fetching and storing on the event loop. In worker processes it runs beside
them, so a cold poll costs about its parsing alone (bench/README.md). The pool
starts on first use, with ``spawn`` (forking a process that runs threads is
unsafe), and a worker that dies (out of memory on a hostile feed) costs that one
feed a ParseError; the next parse gets a fresh pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from aggregator import parse
from aggregator.errors import ParseError
from aggregator.models import ParsedFeed


def default_workers() -> int:
    """One worker per core beyond the first (which fetches and stores), at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class ParseRunner:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None

    async def parse(
        self, body: bytes, content_type: str | None, url: str, member_id: str
    ) -> ParsedFeed:
        if self.workers == 0:
            return await asyncio.to_thread(
                parse.parse_feed, body, content_type, url, member_id
            )
        pool = self._pool or self._start()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                pool, parse.parse_feed, body, content_type, url, member_id
            )
        except ParseError as e:
            # concurrent.futures chains the worker's traceback text as the cause;
            # the message stays one line (KairanError.__str__ appends causes).
            e.__cause__ = None
            raise
        except BrokenProcessPool as e:
            self.close()
            raise ParseError(
                member_id, url, "the parser process died (out of memory?)"
            ) from e

    def _start(self) -> ProcessPoolExecutor:
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
