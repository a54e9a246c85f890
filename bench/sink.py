"""The digest benchmark's SMTP sink: the sandbox SmtpSink in a process of its own.

Run by `bench.digest` as ``python -m bench.sink``. It is the sink that
``python -m aggregator.sandbox.smtp_sink`` runs (``record=False``: messages are
counted, not kept), and it answers one command on stdin, one line on stdout:

``stats``   JSON counts since the last ``stats`` (then started afresh): messages
            accepted, SMTP sessions, the most sessions at once, and the sink's own
            CPU seconds

It exits when stdin closes. Its CPU time is its own process's: aiosmtpd reads
DATA line by line, which costs about as much as the client's side of the floor,
so on a 2-core machine it must not share a process (and a GIL) with the sender.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aggregator.sandbox.smtp_sink import SmtpSink
from bench.commands import CommandProcess, answer

_READY = "smtp://127.0.0.1:"


@dataclass(frozen=True, slots=True)
class SinkStats:
    """What the sink saw during one phase."""

    messages: int
    sessions: int  # connections that said EHLO/HELO
    max_sessions: int  # the most at once
    cpu: float  # the sink process's CPU seconds (user + system)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve() -> None:
    with SmtpSink(record=False) as sink:
        since = _cpu()

        def stats() -> str:
            nonlocal since
            now = _cpu()
            counted = SinkStats(
                messages=sink.count,
                sessions=sink.sessions,
                max_sessions=sink.max_concurrent_sessions,
                cpu=round(now - since, 3),
            )
            sink.reset()
            since = now
            return json.dumps(asdict(counted))

        answer(sink.url, {"stats": stats})


class SinkProcess(CommandProcess):
    """The parent's handle on ``python -m bench.sink``: a context manager."""

    def __init__(self, cwd: Path) -> None:
        argv = [sys.executable, "-m", "bench.sink"]
        super().__init__(argv, cwd, name="SMTP sink", ready_prefix=_READY)

    @property
    def port(self) -> int:
        return int(self.ready.removeprefix(_READY))

    def stats(self) -> SinkStats:
        """The sink's counts since the last call (and start counting afresh)."""
        return SinkStats(**json.loads(self.command("stats")))


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.sink").parse_args(argv)
    serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
