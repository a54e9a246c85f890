"""Kairan's webhook benchmark (issue 5 §6): a delivery pass of N webhook POSTs.

    python -m bench.webhooks [--deliveries 10000] [--endpoints 10] [--concurrency 10]
                             [--per-endpoint 2] [--rounds 3] [--quick] [--profile]

Each round sets up a fresh data directory (not measured): E webhook subscribers
added by the real `endpoints.add`, each with its own URL (``/hooks/NN``) on one
local receiver (`bench.webhook_receiver`, a process of its own), and N/E new
articles of E members stored and enqueued in one transaction, as ingest does
(`store.insert_entry` + `outbox.enqueue_articles`): N deliveries due. Then, each
in a process of its own (`bench.webhook_run`), against the same receiver:

- ``kairan webhooks``: ``DeliveryPass.run(channel="webhook")`` with the real
  WebhookTransport to 127.0.0.1;
- ``floor httpx``: the same N bodies, read back from the pass's batches with
  their webhook-ids and secrets, signed by the same `request_headers` and POSTed
  with a raw ``httpx.AsyncClient`` at the same concurrency.

The receiver counts every request and keeps a sample, which is verified here
with the ``standardwebhooks`` library. Figures are reported, never asserted: the
exit code is 1 only when something is functionally wrong.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import tomlkit
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from aggregator import endpoints, fetch, outbox, runtime, store
from aggregator.db import open_database, unit_of_work
from aggregator.models import EntryStatus, Filters
from aggregator.timefmt import to_db
from bench import profile, publish
from bench.child import run_measured
from bench.digest_pass import BenchClock
from bench.report import json_or_none, progress, workspace
from bench.webhook_receiver import ReceiverProcess
from bench.webhook_report import FLOOR, KAIRAN, Run, show
from bench.webhook_run import Job

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK_DELIVERIES = 1_000


# --- setup (not measured) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    directory: Path
    config: Path
    now: datetime  # when the deliveries are due: the pass runs at this time
    secrets: dict[str, str]  # receiver path → the endpoint's signing secret
    seconds: float
    deliveries: int  # pending rows due at `now`
    problems: list[str]


def config_toml(directory: Path, args: argparse.Namespace) -> str:
    """The publish bench's site and members, with webhooks to 127.0.0.1 allowed."""
    document = tomlkit.loads(publish.config_toml(directory, args.endpoints))
    document["webhooks"] = {
        "allow_private_addresses": True,  # the receiver is on 127.0.0.1
        "concurrency": args.concurrency,
        "per_endpoint": args.per_endpoint,
    }
    return tomlkit.dumps(document)


def path_of(index: int) -> str:
    return f"/hooks/{index:02d}"


def prepare(directory: Path, args: argparse.Namespace, receiver_url: str) -> Setup:
    """A data directory whose outbox holds N webhook deliveries due now."""
    started = time.perf_counter()
    directory.mkdir(parents=True)
    config = directory / "config.toml"
    config.write_text(config_toml(directory, args), encoding="utf-8")
    articles = args.deliveries // args.endpoints
    # Subscribed before the first article, so every article is news to them.
    clock = BenchClock(publish.START - timedelta(hours=1))
    secrets: dict[str, str] = {}
    with runtime.open_runtime(runtime.load(config), clock=clock) as rt:
        with unit_of_work(rt.db):
            for index in range(args.endpoints):
                url = endpoints.checked_url(receiver_url + path_of(index), rt.settings)
                new = endpoints.add(
                    rt.db, url, Filters(), rt.settings, rt.key, clock.now(), "bench"
                )
                secrets[path_of(index)] = new.secret
        clock.at = publish.now_after(articles)
        members = {m.id: m for m in rt.settings.members}
        with unit_of_work(rt.db):
            new_articles = []
            for index in range(articles):
                item, owner = publish.article(index, args.endpoints)
                seen = publish.published_at(index) + timedelta(minutes=5)
                entry_id = store.insert_entry(rt.db, item, owner, EntryStatus.NEW, seen)
                new_articles.append(outbox.NewArticle(entry_id, members[owner], item))
            outbox.enqueue_articles(rt.db, new_articles, clock.now())
        deliveries = rt.db.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'pending' AND due_at <= ?",
            [to_db(clock.now())],
        ).fetchone()[0]
    problems = []
    if deliveries != args.deliveries:
        problems.append(f"{deliveries} deliveries due, not {args.deliveries}")
    return Setup(
        directory=directory,
        config=config,
        now=clock.at,
        secrets=secrets,
        seconds=time.perf_counter() - started,
        deliveries=deliveries,
        problems=problems,
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """What the pass sent, read back from its batches: the floor's jobs."""

    jobs: tuple[Job, ...]
    states: dict[str, int]  # deliveries by state

    @property
    def bodies(self) -> dict[str, bytes]:
        return {job.webhook_id: job.body for job in self.jobs}


def read_sent(setup: Setup) -> Sent:
    settings = runtime.load(setup.config)
    db = open_database(settings.database_path, create=False)
    try:
        rows = db.execute(
            """SELECT b.message_id, b.payload, s.address, s.id FROM batches b
               JOIN subscribers s ON s.id = b.subscriber_id ORDER BY b.id"""
        ).fetchall()
        secrets = {
            who: endpoints.live_secrets(db, who, setup.now)
            for who in {row[3] for row in rows}
        }
        states = dict(
            db.execute("SELECT state, count(*) FROM deliveries GROUP BY state")
        )
    finally:
        db.close()
    jobs = tuple(
        Job(address, message_id, payload or b"", secrets[who])
        for message_id, payload, address, who in rows
    )
    return Sent(jobs, states)


# --- the measured phases -----------------------------------------------------------


def measured(
    name: str,
    round_: int,
    argv: Sequence[str],
    receiver: ReceiverProcess,
    timeout: float,
) -> Run:
    progress(f"round {round_ + 1}: {name} …")
    child = run_measured(argv, cwd=ROOT, timeout=timeout)
    output = json_or_none(child.stdout)
    output = output if isinstance(output, dict) else {}
    run = Run(
        name=name,
        round=round_,
        process=child,
        wall=float(output.get("wall", 0.0)),
        cpu=float(output.get("cpu", 0.0)),
        sent=int(output.get("sent", 0)),
        receiver=receiver.stats(),
        output=output,
    )
    failure = child.failure()
    if failure is not None:
        run.problems.append(failure)
    progress(f"round {round_ + 1}: {name}: {run.wall:.2f} s, {run.cpu:.2f} s CPU")
    return run


def check(run: Run, setup: Setup, sent: Sent, count: int) -> None:
    """N POSTs answered, N distinct ids (the pass's) received, the sample verified."""
    seen = run.receiver
    if run.sent != count:
        run.problems.append(f"{run.sent} POSTs answered 2xx, not {count}")
    if seen.requests != count or seen.distinct_ids != count:
        run.problems.append(
            f"the receiver got {seen.requests} requests, {seen.distinct_ids} ids"
        )
    expected = outbox_digest(sent)
    if seen.ids_sha256 != expected:
        run.problems.append("the receiver's webhook-ids are not the pass's batches'")
    if seen.malformed:
        run.problems.append(f"{seen.malformed} malformed requests")
    run.verified, failures = verify_sample(seen.sample, setup.secrets, sent.bodies)
    run.problems += failures[:3]
    if run.verified != min(count, len(seen.sample)) or not seen.sample:
        run.problems.append(f"{run.verified} of {len(seen.sample)} samples verified")


def outbox_digest(sent: Sent) -> str:
    """The receiver's ids_sha256, computed from the batches' webhook-ids."""
    ids = "\n".join(sorted(job.webhook_id for job in sent.jobs)).encode()
    return hashlib.sha256(ids).hexdigest()


def verify_sample(
    sample: Sequence[dict[str, Any]], secrets: dict[str, str], bodies: dict[str, bytes]
) -> tuple[int, list[str]]:
    """Each sampled request verifies with its endpoint's secret, as a receiver using
    ``standardwebhooks`` would, and its body is the pass's fixed payload."""
    verified, failures = 0, []
    for item in sample:
        body = base64.b64decode(item["body"])
        headers, path = item["headers"], item["path"]
        try:
            Webhook(secrets[path]).verify(body, headers)
        except (KeyError, WebhookVerificationError) as e:
            failures.append(f"{path} {headers.get('webhook-id')}: {e!r}")
            continue
        if bodies.get(headers["webhook-id"]) != body:
            failures.append(f"{headers['webhook-id']}: not the batch's payload")
            continue
        verified += 1
    return verified, failures


def pass_argv(setup: Setup) -> list[str]:
    argv = [sys.executable, "-m", "bench.webhook_run", "pass"]
    return [*argv, "--config", str(setup.config), "--now", setup.now.isoformat()]


def kairan(
    setup: Setup, receiver: ReceiverProcess, args: argparse.Namespace, round_: int
) -> tuple[Run, Sent]:
    run = measured(KAIRAN, round_, pass_argv(setup), receiver, args.timeout)
    sent = read_sent(setup)
    for key in ("retry", "failed"):
        if run.output.get(key):
            run.problems.append(f"{run.output[key]} {key}: {run.output.get('errors')}")
    if sent.states != {"sent": args.deliveries} or len(sent.jobs) != args.deliveries:
        run.problems.append(f"{len(sent.jobs)} batches, delivery states {sent.states}")
    check(run, setup, sent, args.deliveries)
    return run, sent


def floor(
    setup: Setup,
    sent: Sent,
    receiver: ReceiverProcess,
    args: argparse.Namespace,
    round_: int,
) -> Run:
    jobs = setup.directory / "jobs.jsonl"
    jobs.write_text("".join(job.line() + "\n" for job in sent.jobs), encoding="utf-8")
    settings = runtime.load(setup.config)
    user_agent = fetch.user_agent(settings.poll, settings.site)  # the pass's
    argv = [sys.executable, "-m", "bench.webhook_run", "floor", "--jobs", str(jobs)]
    argv += ["--concurrency", str(args.concurrency), "--user-agent", user_agent]
    run = measured(FLOOR, round_, argv, receiver, args.timeout)
    check(run, setup, sent, args.deliveries)
    return run


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    setups: list[Setup] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def run_round(self, round_: int) -> None:
        """Setup, the pass, then the floor of what the pass sent: one receiver."""
        with ReceiverProcess(ROOT) as receiver:
            progress(f"round {round_ + 1}: setup ({self.args.deliveries} deliveries) …")
            setup = prepare(self.work / f"round-{round_}", self.args, receiver.url)
            self.setups.append(setup)
            progress(f"round {round_ + 1}: setup: {setup.seconds:.2f} s")
            early = receiver.stats()
            if early.requests:
                setup.problems.append(f"{early.requests} requests before the pass")
            if setup.problems:
                return
            run, sent = kairan(setup, receiver, self.args, round_)
            self.runs.append(run)
            if not run.problems:
                self.runs.append(floor(setup, sent, receiver, self.args, round_))

    def profile(self, results: Path) -> profile.Profile:
        """One more setup and pass, under py-spy (every busy thread: SQLite too)."""
        with ReceiverProcess(ROOT) as receiver:
            setup = prepare(self.work / "profiled", self.args, receiver.url)
            progress("profiling kairan webhooks …")
            return profile.record(
                "webhooks",
                pass_argv(setup),
                results / "webhooks.folded",
                cwd=ROOT,
                timeout=self.args.timeout,
                gil=False,
            )


# --- entry point -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks",
        description="Kairan's webhook benchmark: a delivery pass against its floor.",
    )
    add = parser.add_argument
    add("-n", "--deliveries", type=int, help="webhook POSTs; 10000")
    add("--endpoints", type=int, default=10, help="subscribers (URLs); 10")
    add("--concurrency", type=int, default=10, help="POSTs in flight; 10")
    add("--per-endpoint", type=int, default=2, help="webhooks.per_endpoint; 2")
    add("--rounds", type=int, default=3, help="rounds (medians are reported); 3")
    add("--quick", action="store_true", help=f"{QUICK_DELIVERIES} deliveries")
    add("--profile", action="store_true", help="profile one more pass under py-spy")
    add(
        "--json",
        type=Path,
        metavar="FILE",
        help="default bench/results/webhooks-N.json",
    )
    add("--results", type=Path, default=RESULTS, help="where the profile goes")
    add("--timeout", type=float, default=600.0, help="seconds per phase; 600")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.deliveries is None:
        args.deliveries = QUICK_DELIVERIES if args.quick else 10_000
    elif args.quick:
        parser.error("--quick sets the deliveries; give one or the other")
    limits = (
        1 <= args.endpoints <= 99,
        1 <= args.deliveries <= 1_000_000,
        args.deliveries % args.endpoints == 0,
        1 <= args.concurrency <= 200,
        1 <= args.per_endpoint <= 50,
        1 <= args.rounds <= 20,
    )
    if not all(limits):
        parser.error(
            "need endpoints 1-99 dividing deliveries (1-1000000), concurrency "
            "1-200, per-endpoint 1-50, rounds 1-20"
        )
    if args.json is None:
        args.json = RESULTS / f"webhooks-{args.deliveries}.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    item: profile.Profile | None = None
    with workspace(args.keep) as work:
        bench = Bench(args, work)
        for round_ in range(args.rounds):
            bench.run_round(round_)
        if args.profile:
            args.results.mkdir(parents=True, exist_ok=True)
            item = bench.profile(args.results)
    figures = show(args, bench.setups, bench.runs, item)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, ensure_ascii=False, indent=2, default=str)
    args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
