"""Daemon test helpers: a config.toml for `kairan run`, the daemon in-process or as a
subprocess, bounded waits, and reading /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType

from prometheus_client.parser import text_string_to_metric_families

from aggregator.daemon import Daemon

WAIT = 15.0  # seconds any step may take before a test gives up
STEP = 0.1  # seconds between two looks at a condition


def config_text(
    feeds: Mapping[str, str],
    *,
    smtp_port: int,
    server_port: int = 8080,
    extra: str = "",
) -> str:
    """A config.toml: `feeds` (member id → feed URL) as members, mail to 127.0.0.1
    on `smtp_port`, webhooks to private addresses allowed, 1 s daemon ticks, the
    shortest poll interval and no jitter; `extra` is appended (more tables)."""
    members = "".join(
        f'\n[[members]]\nid = "{member_id}"\nname = "{member_id.title()}"\n'
        f'feed = "{feed}"\n'
        for member_id, feed in feeds.items()
    )
    return f"""
[site]
contact = "https://example.jp/contact"
base_url = "https://kairan.example.jp/"

[poll]
interval = "5m"
jitter = 0
connect_timeout = 2
timeout = 5
parse_workers = 0

[email]
host = "127.0.0.1"
port = {smtp_port}
from = "kairan@example.jp"
sender_name = "回覧テスト事務局"
postal_address = "東京都千代田区1-1"
timeout = 5

[webhooks]
timeout = 5
allow_private_addresses = true

[server]
host = "127.0.0.1"
port = {server_port}

[daemon]
poll_tick = 1
deliver_tick = 1

[storage]
data_dir = "data"
{extra}
{members}"""


def free_port() -> int:
    """A port nothing listens on right now (for a config file, which refuses 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = WAIT
) -> None:
    """Wait until `condition()` (plain or async) holds, looking every STEP; fail
    after `within` seconds."""
    for _ in range(round(within / STEP)):
        if await _holds(condition):
            return
        await asyncio.sleep(STEP)
    assert await _holds(condition), f"not within {within:g} s: {what}"


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return await result if inspect.isawaitable(result) else result


@contextlib.asynccontextmanager
async def running(daemon: Daemon, *, signals: bool = False) -> AsyncIterator[Daemon]:
    """`daemon.main()` as a task of this loop, started; stopped and awaited when
    the block ends, however it ends. With `signals` it handles this process's
    SIGHUP/SIGTERM/SIGINT while it runs."""
    task = asyncio.create_task(daemon.main(signals=signals))
    try:
        started = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({started, task}, timeout=WAIT, return_when="FIRST_COMPLETED")
        started.cancel()
        if task.done():
            task.result()  # the start failed: its error is the test's
        assert daemon.started.is_set(), "the daemon did not start"
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, WAIT)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name` with exactly these labels in a /metrics body."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample called `name`, whatever its labels."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path.cwd())}


class KairanProcess:
    """`kairan --config CONFIG ARGS…` (default: `run`) as a subprocess, its stderr
    (the log) in a file; a context manager that kills the process if a test
    leaves it running."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("wb")
        command = args or ("run",)
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "aggregator", "--config", str(config), *command],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=_env(),
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def pause(self, seconds: float) -> None:
        """Let `seconds` pass; return early if the process exits."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(seconds)

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait up to WAIT for `condition()`; fail early if the process exits."""
        deadline = time.monotonic() + WAIT
        while not condition():
            assert self.proc.poll() is None, (
                f"kairan exited {self.proc.returncode} before {what}:\n{self.log}"
            )
            assert time.monotonic() < deadline, f"not within {WAIT:g} s: {what}"
            self.pause(STEP)

    def wait_for_log(self, text: str) -> None:
        self.wait_until(lambda: text in self.log, f"{text!r} in the log")

    def send(self, number: signal.Signals) -> None:
        self.proc.send_signal(number)

    def wait(self, timeout: float = WAIT) -> int:
        return self.proc.wait(timeout)

    def __enter__(self) -> KairanProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self._log.close()
