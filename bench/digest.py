"""Kairan's digest benchmark (issue 3 §6): a delivery pass of daily digests.

    python -m bench.digest [--subscribers 10000] [--articles 20] [--concurrency 4]
                           [--repeat 1] [--quick] [--profile] [--json FILE]

Each round sets up a fresh data directory (not measured): N active daily
subscribers (08:00 Asia/Tokyo, everything), one member, and A new articles put
into the outbox by the real path: a baseline poll of the member's feed, served
by the sandbox FeedServer, then a poll of its next version with A new items,
whose ingest enqueues N × A deliveries. Then, each in a process of its own and
each with a fresh SMTP sink (`bench.sink`) in another process:

- ``floor aiosmtplib``: `bench.smtp_floor` sends N copies of one real digest,
  rendered once, with raw aiosmtplib over ``concurrency`` persistent connections;
- ``kairan digests``: `bench.digest_pass` runs ``DeliveryPass.run()`` with the
  clock at the digests' due time: claim, load, render, build, SMTP and outcome
  commits of all N digests.

The figures are the children's own timings of that work (interpreter start-up
and imports excluded) and their peak RSS. Figures are reported, not asserted:
the exit code is 1 only when something is functionally wrong (a sink that did
not get exactly N messages, a delivery that is not ``sent``, a wrong setup).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomlkit

from aggregator import outbox, outbox_view, runtime, subscribers
from aggregator.db import open_database, unit_of_work
from aggregator.models import (
    Cadence,
    ConsentSource,
    Filters,
    Schedule,
    SubscriberKind,
)
from aggregator.runtime import Runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from bench import profile, report
from bench.child import Measured, run_measured
from bench.digest_pass import BenchClock
from bench.feeds import feed_xml, published
from bench.report import Ratio, json_or_none, progress, workspace
from bench.sink import SinkProcess, SinkStats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGET = 1.5  # digests ≤ 1.5 × the floor, wall and CPU
QUICK_SUBSCRIBERS = 200  # --quick: a smoke test for CI, about 7 s
MEMBER = "bench-0000"
FEED_PATH = "/bench0000/rss"
ZONE = "Asia/Tokyo"
SCHEDULE = Schedule(Cadence.DAILY, 8, 0)  # every day at 08:00 local time
SENDER = "kairan@example.jp"
FLOOR = "floor aiosmtplib"
KAIRAN = "kairan digests"
_PACKAGES = ("kairan", "aiosmtplib", "aiosmtpd", "jinja2", "sqlite-utils")


# --- setup (not measured) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stops:
    """Where the bench's clock stands for each step of the setup, in UTC.

    The baseline feed holds articles 0 … A-1 (bench.feeds dates article k seven
    hours after article k-1), the next version A … 2A-1: subscribers join after
    the baseline and before article A, so every new article is theirs.
    """

    baseline: datetime  # the first poll: stores the backlog, notifies nobody
    subscribed: datetime  # when the N subscribers join
    polled: datetime  # the poll that finds the A new articles
    due: datetime  # the next 08:00 in Tokyo after that poll: the pass runs now

    @classmethod
    def for_articles(cls, articles: int) -> Stops:
        baseline = published(articles - 1).astimezone(UTC) + timedelta(hours=1)
        polled = published(2 * articles - 1).astimezone(UTC) + timedelta(hours=1)
        return cls(
            baseline=baseline,
            subscribed=baseline + timedelta(minutes=1),
            polled=polled,
            due=outbox.due_time(SCHEDULE, ZONE, polled),
        )


@dataclass(frozen=True, slots=True)
class Setup:
    directory: Path
    config: Path
    recipients: Path  # the subscribers' addresses, one a line (for the floor)
    due: datetime
    seconds: float  # the whole setup
    add_seconds: float  # subscribers.add × N in one unit_of_work
    poll_seconds: float  # the poll that ingests the new articles and enqueues
    deliveries: int  # pending rows due at `due`
    problems: list[str]


def config_toml(directory: Path, feed: str, smtp_port: int, concurrency: int) -> str:
    return tomlkit.dumps(
        {
            "site": {
                "title": "回覧ベンチ",
                "base_url": "https://kairan.example.jp/",
                "contact": "office@example.jp",
                "timezone": ZONE,
            },
            # setup only: the pass never polls. 0: parse in the poller itself.
            "poll": {"parse_workers": 0},
            "email": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "from": SENDER,
                "concurrency": concurrency,
                "timeout": 60,
                "sender_name": "回覧ベンチ事務局",
                "postal_address": "東京都千代田区千代田1-1",
            },
            "storage": {"data_dir": str(directory / "data")},
            "members": [
                {"id": MEMBER, "name": "ベンチ市", "feed": feed, "prefecture": "東京都"}
            ],
        }
    )


def address(index: int) -> str:
    return f"reader{index:05d}@example.jp"


def prepare(directory: Path, args: argparse.Namespace, smtp_port: int) -> Setup:
    """A data directory whose outbox holds N digests due at ``Stops.due``."""
    started = time.perf_counter()
    directory.mkdir(parents=True)
    stops = Stops.for_articles(args.articles)
    clock = BenchClock(stops.baseline)
    problems: list[str] = []
    with FeedServer(record=False) as feeds:
        feeds.route(
            FEED_PATH, static_route(feed_xml(0, args.articles, args.articles - 1))
        )
        config = directory / "config.toml"
        text = config_toml(directory, feeds.url(FEED_PATH), smtp_port, args.concurrency)
        config.write_text(text, encoding="utf-8")
        with runtime.open_runtime(runtime.load(config), clock=clock) as rt:
            baseline = asyncio.run(poll(rt))
            if baseline != Counter(baseline=args.articles):
                problems.append(f"baseline poll: {dict(baseline)}")
            clock.at = stops.subscribed
            add_seconds = time.perf_counter()
            add_subscribers(rt, args.subscribers)
            add_seconds = time.perf_counter() - add_seconds
            newer = feed_xml(0, args.articles, 2 * args.articles - 1)
            feeds.route(FEED_PATH, static_route(newer))
            clock.at = stops.polled
            poll_seconds = time.perf_counter()
            found = asyncio.run(poll(rt))
            poll_seconds = time.perf_counter() - poll_seconds
            if found != Counter(new=args.articles):
                problems.append(f"second poll: {dict(found)}, not {args.articles} new")
            deliveries = pending_due(rt, stops.due)
    expected = args.subscribers * args.articles
    if deliveries != expected:
        problems.append(f"{deliveries} deliveries due, not {expected}")
    recipients = directory / "recipients.txt"
    lines = "".join(address(i) + "\n" for i in range(args.subscribers))
    recipients.write_text(lines, encoding="utf-8")
    return Setup(
        directory=directory,
        config=config,
        recipients=recipients,
        due=stops.due,
        seconds=time.perf_counter() - started,
        add_seconds=add_seconds,
        poll_seconds=poll_seconds,
        deliveries=deliveries,
        problems=problems,
    )


async def poll(rt: Runtime) -> Counter[str]:
    """One forced poll cycle; what it stored: {"baseline": n, "new": n, …}."""
    async with rt.poller() as poller:
        cycle = await poller.run_cycle((), force=True)
    counts: Counter[str] = Counter()
    for member in cycle.members:
        if member.error:
            counts[f"error: {member.error}"] += 1
        counts.update(baseline=member.baseline, new=member.new, edited=member.edited)
    return +counts  # without the zero counts


def add_subscribers(rt: Runtime, count: int) -> None:
    """N confirmed daily subscribers by the real `subscribers.add`, one transaction."""
    now = rt.clock.now()
    with unit_of_work(rt.db):
        for index in range(count):
            new = subscribers.NewSubscriber(
                kind=SubscriberKind.EMAIL,
                address=address(index),
                schedule=SCHEDULE,
                filters=Filters(),
                timezone=ZONE,
                language="ja",
                confirmed=True,
                consent_source=ConsentSource.IMPORT,
                consent_origin="bench",
            )
            subscribers.add(rt.db, new, rt.key, now)


def pending_due(rt: Runtime, due: datetime) -> int:
    rows = outbox_view.depth(rt.db)
    return sum(r.count for r in rows if r.state == "pending" and r.oldest_due == due)


def floor_message(setup: Setup) -> bytes:
    """One real digest, as `kairan digest preview 1 --format eml` renders it.

    Preview builds the message the pass would send to subscriber 1 with the same
    functions (`mail_channel.request_for`, `message_bytes`); only its Message-ID
    (``<preview@host>``, 16 bytes shorter) and its Date (now) differ.
    """
    argv = [sys.executable, "-m", "aggregator", "--config", str(setup.config)]
    argv += ["digest", "preview", "1", "--format", "eml"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, timeout=60)
    return done.stdout


# --- the measured phases -----------------------------------------------------------


@dataclass
class Run:
    """One measured run: the child's own timing, the process as a whole, the sink."""

    name: str
    round: int
    process: Measured  # from spawn to reaped; CPU and peak RSS from os.wait4
    wall: float  # seconds of the work itself, as the child timed it
    cpu: float
    sent: int
    sink: SinkStats
    output: dict[str, Any]  # the child's JSON
    problems: list[str] = field(default_factory=list)

    @property
    def rss_mb(self) -> float:
        """The child's own peak RSS (VmHWM), as it reported it."""
        return int(self.output.get("rss_kb", 0)) / 1024

    def row(self) -> dict[str, object]:
        return {
            "phase": self.name,
            "round": self.round,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "process_wall_s": round(self.process.wall, 3),
            "process_cpu_s": round(self.process.cpu, 3),
            "peak_rss_mb": round(self.rss_mb, 1),
            # includes the driver's RSS at spawn: see bench.child.own_peak_rss_kb
            "wait4_maxrss_mb": round(self.process.rss_mb, 1),
            "sent": self.sent,
            "sink": asdict(self.sink),
            "output": self.output,
            "problems": self.problems,
        }


def measured(
    name: str, round_: int, argv: Sequence[str], sink: SinkProcess, timeout: float
) -> Run:
    """Run a child that sends to ``sink`` and prints JSON figures; measure it."""
    progress(f"round {round_ + 1}: {name} …")
    child = run_measured(argv, cwd=ROOT, timeout=timeout)
    stats = sink.stats()
    output = json_or_none(child.stdout)
    output = output if isinstance(output, dict) else {}
    run = Run(
        name=name,
        round=round_,
        process=child,
        wall=float(output.get("wall", 0.0)),
        cpu=float(output.get("cpu", 0.0)),
        sent=int(output.get("sent", 0)),
        sink=stats,
        output=output,
    )
    failure = child.failure()
    if failure is not None:
        run.problems.append(failure)
    progress(f"round {round_ + 1}: {name}: {run.wall:.2f} s, {run.cpu:.2f} s CPU")
    return run


def expect_sent(run: Run, count: int) -> None:
    """The child says it sent ``count`` messages, and the sink got exactly those."""
    if run.sent != count:
        run.problems.append(f"{run.sent} messages sent, not {count}")
    if run.sink.messages != count:
        run.problems.append(f"the sink accepted {run.sink.messages}, not {count}")


def floor(setup: Setup, args: argparse.Namespace, round_: int) -> Run:
    message = setup.directory / "digest.eml"
    message.write_bytes(floor_message(setup))
    argv = [sys.executable, "-m", "bench.smtp_floor", "--message", str(message)]
    argv += ["--recipients", str(setup.recipients), "--sender", SENDER]
    argv += ["--concurrency", str(args.concurrency)]
    with SinkProcess(ROOT) as sink:
        argv += ["--port", str(sink.port)]
        run = measured(FLOOR, round_, argv, sink, args.timeout)
    expect_sent(run, args.subscribers)
    return run


def pass_argv(setup: Setup) -> list[str]:
    argv = [sys.executable, "-m", "bench.digest_pass", "--config", str(setup.config)]
    return [*argv, "--now", setup.due.isoformat()]


def kairan(
    setup: Setup, sink: SinkProcess, args: argparse.Namespace, round_: int
) -> Run:
    run = measured(KAIRAN, round_, pass_argv(setup), sink, args.timeout)
    expect_sent(run, args.subscribers)
    for key in ("retry", "failed"):
        if run.output.get(key):
            run.problems.append(f"{run.output[key]} {key}: {run.output.get('errors')}")
    run.problems += outbox_problems(setup, args)
    return run


def outbox_problems(setup: Setup, args: argparse.Namespace) -> list[str]:
    """Every delivery is `sent`, in N messages (batches) of A articles each."""
    db = open_database(runtime.load(setup.config).database_path, create=False)
    try:
        states = dict(
            db.execute(
                "SELECT state, count(*) FROM deliveries GROUP BY state"
            ).fetchall()
        )
        sizes = db.execute(
            """SELECT count(*), min(n), max(n) FROM
                   (SELECT count(*) AS n FROM deliveries GROUP BY batch_id)"""
        ).fetchone()
    finally:
        db.close()
    problems = []
    expected = {"sent": args.subscribers * args.articles}
    if states != expected:
        problems.append(f"delivery states {states}, expected {expected}")
    if tuple(sizes) != (args.subscribers, args.articles, args.articles):
        problems.append(
            f"{sizes[0]} messages of {sizes[1]}–{sizes[2]} articles, not "
            f"{args.subscribers} of {args.articles}"
        )
    return problems


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    setups: list[Setup] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    message_bytes: int = 0

    def run_round(self, round_: int) -> None:
        with SinkProcess(ROOT) as sink:
            progress(
                f"round {round_ + 1}: setup ({self.args.subscribers} subscribers) …"
            )
            setup = prepare(self.work / f"round-{round_}", self.args, sink.port)
            self.setups.append(setup)
            progress(f"round {round_ + 1}: setup: {setup.seconds:.2f} s")
            if setup.problems:
                return
            self.runs.append(floor(setup, self.args, round_))
            self.message_bytes = (setup.directory / "digest.eml").stat().st_size
            early = sink.stats()  # the setup sends nothing (subscribers are active)
            run = kairan(setup, sink, self.args, round_)
            if early.messages:
                run.problems.append(f"{early.messages} messages before the pass")
            self.runs.append(run)

    def profile(self, results: Path) -> profile.Profile:
        """One more setup and pass, under py-spy (every busy thread, not the GIL)."""
        with SinkProcess(ROOT) as sink:
            setup = prepare(self.work / "profiled", self.args, sink.port)
            progress("profiling kairan digests …")
            return profile.record(
                "digests",
                pass_argv(setup),
                results / "digest.folded",
                cwd=ROOT,
                timeout=self.args.timeout,
                gil=False,
            )


# --- where the time goes -----------------------------------------------------------

# (file, function or "" for any function in it, stage): a sample belongs to the
# stage of its innermost frame that matches one of these.
_STAGE_RULES = (
    ("aggregator/deliver.py", "_send_chunk", "claim"),
    ("aggregator/outbox.py", "due_subscribers", "claim"),
    ("aggregator/outbox.py", "claim", "claim"),
    ("aggregator/deliver.py", "_outgoing", "load articles (store.get_entry)"),
    ("aggregator/mail_channel.py", "", "compose (MailRequest, tokens)"),
    ("aggregator/compose.py", "", "compose (MailRequest, tokens)"),
    ("notifiers/render.py", "", "render (Jinja2)"),
    ("notifiers/email_message.py", "", "build (MIME bytes)"),
    ("notifiers/email.py", "", "send (SmtpTransport, aiosmtplib)"),
    ("aiosmtplib/", "", "send (SmtpTransport, aiosmtplib)"),
    ("aggregator/deliver.py", "_send_one", "record outcome (commit per message)"),
)
# Only when no frame matches a rule above: the loop itself (polling, callbacks).
_LOOP = (("asyncio/", "", "event loop"), ("selectors.py", "", "event loop"))
_OUTSIDE = "outside run() (start-up, config, opening the database)"


def stage_of(frames: Sequence[profile.Frame]) -> str:
    for rules in (_STAGE_RULES, _LOOP):
        for frame in reversed(frames):
            for file, function, stage in rules:
                if file in frame.file and function in ("", *_names(frame.func)):
                    return stage
    return _OUTSIDE


def _names(func: str) -> tuple[str, str]:
    """A frame's function as py-spy names it, and its last part (the method)."""
    return func, func.rpartition(".")[2]


def stages(folded: Path) -> Counter[str]:
    """py-spy's samples summed by stage of the pass."""
    counts: Counter[str] = Counter()
    with folded.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if count.isdigit():
                counts[stage_of(profile.parse_frames(stack))] += int(count)
    return counts


# --- the report --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """A phase over its rounds: median timings, largest RSS."""

    name: str
    runs: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    process_wall: float
    process_cpu: float
    rss_mb: float
    sink_cpu: float
    messages: int

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Summary:
        walls = [r.wall for r in runs]
        return cls(
            name=runs[-1].name,
            runs=len(runs),
            wall=statistics.median(walls),
            wall_min=min(walls),
            wall_max=max(walls),
            cpu=statistics.median(r.cpu for r in runs),
            process_wall=statistics.median(r.process.wall for r in runs),
            process_cpu=statistics.median(r.process.cpu for r in runs),
            rss_mb=max(r.rss_mb for r in runs),
            sink_cpu=statistics.median(r.sink.cpu for r in runs),
            messages=runs[-1].sink.messages,
        )

    @property
    def rate(self) -> float:
        return self.messages / self.wall if self.wall > 0 else 0.0


def summaries(runs: Sequence[Run]) -> dict[str, Summary]:
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.name, []).append(run)
    return {name: Summary.of(group) for name, group in grouped.items()}


def ratio(by_name: dict[str, Summary]) -> Ratio:
    top, bottom = by_name.get(KAIRAN), by_name.get(FLOOR)
    if top is None or bottom is None or not bottom.wall or not bottom.cpu:
        return Ratio("digests / floor", None, None, TARGET)
    return Ratio(
        "digests / floor", top.wall / bottom.wall, top.cpu / bottom.cpu, TARGET
    )


_HEADER = (
    "phase",
    "runs",
    "wall s",
    "wall range",
    "CPU s",
    "msgs/s",
    "peak RSS MB",
    "process wall s",
    "process CPU s",
    "sink CPU s",
    "received",
)


def phase_table(items: Sequence[Summary]) -> str:
    rows = [list(_HEADER)] + [
        [
            s.name,
            str(s.runs),
            f"{s.wall:.2f}",
            f"{s.wall_min:.2f}–{s.wall_max:.2f}",
            f"{s.cpu:.2f}",
            f"{s.rate:.0f}",
            f"{s.rss_mb:.0f}",
            f"{s.process_wall:.2f}",
            f"{s.process_cpu:.2f}",
            f"{s.sink_cpu:.2f}",
            str(s.messages),
        ]
        for s in items
    ]
    return report.table(rows)


def setup_line(setups: Sequence[Setup]) -> str:
    last = setups[-1]
    return (
        f"setup (not measured, last round): {last.seconds:.2f} s in all; "
        f"subscribers.add × N in one unit_of_work {last.add_seconds:.2f} s; "
        f"the poll that enqueued {last.deliveries} deliveries {last.poll_seconds:.2f} s"
    )


def stage_text(item: profile.Profile, counts: Counter[str]) -> str:
    lines = [f"  by stage of the pass ({item.samples} samples):"]
    for stage, samples in counts.most_common():
        share = 100 * samples / max(item.samples, 1)
        lines.append(f"    {share:5.1f}%  {item.seconds(samples):6.2f} s  {stage}")
    return "\n".join(lines)


def show(
    bench: Bench, item: profile.Profile | None, counts: Counter[str]
) -> dict[str, Any]:
    """Print the tables; return every figure (for --json)."""
    args = bench.args
    by_name = summaries(bench.runs)
    ratios = [ratio(by_name)]
    problems = [
        f"setup {s.directory.name}: {p}" for s in bench.setups for p in s.problems
    ]
    problems += [
        f"round {r.round + 1}, {r.name}: {p}" for r in bench.runs for p in r.problems
    ]
    print(
        f"{args.subscribers} daily digests × {args.articles} articles (message "
        f"{bench.message_bytes / 1024:.1f} KiB), concurrency {args.concurrency}, "
        f"{len(bench.setups)} round(s)"
    )
    print(setup_line(bench.setups))
    print()
    print(phase_table(list(by_name.values())))
    print()
    print(report.ratio_table(ratios))
    print(rss_line(bench.runs))
    if item is not None:
        print()
        print(report.profile_text(item))
        if item.error is None:
            print(stage_text(item, counts))
    print()
    print("\n".join(["PROBLEMS:", *problems]) if problems else "no functional problems")
    return {
        "machine": report.machine(_PACKAGES),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "message_bytes": bench.message_bytes,
        "setups": [setup_row(s) for s in bench.setups],
        "summaries": [asdict(s) for s in by_name.values()],
        "ratios": [r.as_dict() for r in ratios],
        "runs": [r.row() for r in bench.runs],
        "profile": None if item is None else item.as_dict(report.TOP),
        "stages": dict(counts.most_common()),
        "problems": problems,
    }


def rss_line(runs: Sequence[Run]) -> str:
    """Each phase's largest peak RSS; for the pass, also its RSS before run()."""
    parts = []
    for name in (KAIRAN, FLOOR):
        mine = [r for r in runs if r.name == name]
        if not mine:
            continue
        part = f"{name} {max(r.rss_mb for r in mine):.0f} MB"
        before = [int(r.output.get("rss_before_kb", 0)) for r in mine]
        if name == KAIRAN and any(before):
            part += f" ({max(before) / 1024:.0f} MB before run())"
        parts.append(part)
    return "peak RSS: " + (", ".join(parts) or "-")


def setup_row(setup: Setup) -> dict[str, object]:
    return {
        "directory": setup.directory.name,
        "seconds": round(setup.seconds, 3),
        "add_seconds": round(setup.add_seconds, 3),
        "poll_seconds": round(setup.poll_seconds, 3),
        "deliveries": setup.deliveries,
        "due": setup.due.isoformat(),
        "problems": setup.problems,
    }


# --- entry point -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.digest",
        description="Kairan's digest benchmark: a delivery pass against its floor.",
    )
    add = parser.add_argument
    add("-n", "--subscribers", type=int, help="active daily subscribers; 10000")
    add("--articles", type=int, default=20, help="new articles in each digest; 20")
    add("--concurrency", type=int, default=4, help="SMTP connections; default 4")
    add("--repeat", type=int, default=1, help="rounds (medians are reported); 1")
    add("--quick", action="store_true", help=f"{QUICK_SUBSCRIBERS} subscribers")
    add("--profile", action="store_true", help="profile one more pass under py-spy")
    add("--json", type=Path, metavar="FILE", help="write every figure to FILE")
    add("--results", type=Path, default=RESULTS, help="where the profile goes")
    add("--timeout", type=float, default=600.0, help="seconds per phase; 600")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.subscribers is None:
        args.subscribers = QUICK_SUBSCRIBERS if args.quick else 10_000
    elif args.quick:
        parser.error("--quick sets the subscribers; give one or the other")
    limits = (
        1 <= args.subscribers <= 99_999,
        1 <= args.articles <= 500,
        1 <= args.concurrency <= 100,
        1 <= args.repeat <= 20,
    )
    if not all(limits):
        parser.error(
            "need subscribers 1-99999, articles 1-500, concurrency 1-100, repeat 1-20"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    item: profile.Profile | None = None
    counts: Counter[str] = Counter()
    with workspace(args.keep) as work:
        bench = Bench(args, work)
        for round_ in range(args.repeat):
            bench.run_round(round_)
        if args.profile:
            args.results.mkdir(parents=True, exist_ok=True)
            item = bench.profile(args.results)
            if item.error is None:
                counts = stages(item.output)
    figures = show(bench, item, counts)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(figures, ensure_ascii=False, indent=2, default=str)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
