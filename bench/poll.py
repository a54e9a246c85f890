"""Kairan's polling benchmark (issue 2 §9): `kairan poll` against its floors.

    python -m bench.poll [--feeds 1000] [--items 20] [--latency 50]
                         [--concurrency 50] [--repeat 1] [--one-new] [--profile]
                         [--json FILE]

Generates N note-shaped feeds, serves them from the sandbox feed server in a
process of its own (with the latency before each response), then measures each
phase in a child process of its own (wall time; CPU and peak RSS from os.wait4):

- ``startup``: ``kairan --version``, the interpreter and Kairan's imports;
- ``floor httpx`` / ``floor httpx 304``: one httpx.AsyncClient GETting every feed
  at the same concurrency, each body parsed by feedparser at its fastest; then the
  same GETs with If-None-Match, all 304s, nothing parsed;
- ``floor aiohttp`` / ``floor aiohttp 304``: the same with aiohttp (the machine
  floor; needs the ``bench`` extra);
- ``kairan cold``: ``kairan poll --force --json`` into a fresh data directory;
- ``kairan warm``: the same again, nothing changed: must be 100% 304s, no parse;
- ``kairan one-new`` (``--one-new``): 10% of the feeds gain one new item of twenty.

Figures are reported, not asserted: the exit code is 1 only when something is
functionally wrong (an error, a wrong count, a warm poll that is not all 304s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile, report
from bench.child import Measured, run_measured
from bench.feeds import FeedSet
from bench.report import Phase, json_or_none, progress, workspace
from bench.server import ServerProcess, ServerStats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MAX_PER_HOST = 50  # config.toml's upper bound for poll.per_host
ONE_NEW_SHARE = 10  # --one-new: every tenth feed gains an item

# A member's entry in `kairan poll --json`.
MemberJson = dict[str, Any]
Check = Callable[[list[MemberJson], ServerStats], list[str]]


@dataclass
class Bench:
    """One benchmark run: the feeds, the server, the phases measured so far."""

    args: argparse.Namespace
    work: Path
    feeds: FeedSet
    server: ServerProcess
    round: int = 0
    newest: dict[int, int] = field(default_factory=dict)  # feed → newest serial
    phases: list[Phase] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.feeds.count

    def url(self, index: int) -> str:
        return f"{self.server.base_url}/{self.feeds.path(index)}"

    # --- measuring ------------------------------------------------------------

    def measure(self, name: str, argv: Sequence[str]) -> tuple[Measured, ServerStats]:
        self.server.stats()  # start counting from zero
        progress(f"round {self.round + 1}: {name} …")
        run = run_measured(argv, cwd=ROOT, timeout=self.args.timeout)
        stats = self.server.stats()
        progress(
            f"round {self.round + 1}: {name}: {run.wall:.2f} s, {run.cpu:.2f} s CPU"
        )
        return run, stats

    def add(
        self, name: str, run: Measured, stats: ServerStats, parsed: int, got_304: int
    ) -> Phase:
        failure = run.failure()
        phase = Phase(name, self.round, run, stats, parsed, got_304, [])
        if failure is not None:
            phase.problems.append(failure)
        self.phases.append(phase)
        return phase

    def server_problems(self, stats: ServerStats, expect_304: int) -> list[str]:
        """Every feed requested exactly once, ``expect_304`` of them answered 304."""
        problems = []
        if stats.requests != self.n or stats.paths != self.n:
            problems.append(
                f"server saw {stats.requests} requests for {stats.paths} paths, "
                f"expected {self.n}"
            )
        if stats.not_modified != expect_304:
            problems.append(
                f"server answered {stats.not_modified} 304s, not {expect_304}"
            )
        return problems

    # --- phases -------------------------------------------------------------

    def startup(self) -> None:
        argv = [sys.executable, "-m", "aggregator", "--version"]
        self.add("startup", *self.measure("startup", argv), 0, 0)

    def floor(self, mode: str, *, conditional: bool) -> None:
        """A floor run; an unconditional one saves the ETags that the 304 one sends."""
        urls = self.work / "urls.txt"
        urls.write_text("\n".join(map(self.url, range(self.n))) + "\n", "utf-8")
        etags = self.work / "etags.json"
        argv = [sys.executable, "-m", "bench.floor", mode, "--urls", str(urls)]
        argv += ["--concurrency", str(self.args.concurrency)]
        argv += ["--etags" if conditional else "--save-etags", str(etags)]
        name = f"floor {mode}" + (" 304" if conditional else "")
        run, stats = self.measure(name, argv)
        tally = json_or_none(run.stdout)
        tally = tally if isinstance(tally, dict) else {}
        statuses = tally.get("statuses", {})
        phase = self.add(
            name, run, stats, tally.get("parsed", 0), statuses.get("304", 0)
        )
        expected = {"304": self.n} if conditional else {"200": self.n}
        if statuses != expected:
            phase.problems.append(f"statuses {statuses}, expected {expected}")
        entries = 0 if conditional else self.n * self.feeds.items
        if tally.get("entries") != entries:
            phase.problems.append(f"{tally.get('entries')} entries, not {entries}")
        phase.problems += self.server_problems(stats, self.n if conditional else 0)

    def kairan(self, name: str, config: Path, check: Check) -> None:
        argv = [sys.executable, "-m", "aggregator", "--config", str(config)]
        run, stats = self.measure(name, [*argv, "poll", "--force", "--json"])
        members = json_or_none(run.stdout)
        members = members if isinstance(members, list) else []
        kinds = Counter(str(m.get("status")) for m in members)
        phase = self.add(name, run, stats, kinds["ok"], kinds["not_modified"])
        if len(members) != self.n:
            phase.problems.append(f"{len(members)} member reports, not {self.n}")
        failed = [m for m in members if str(m.get("status")).endswith("error")]
        if failed:
            phase.problems.append(
                f"{len(failed)} members failed, e.g. {failed[0].get('member')}: "
                f"{failed[0].get('error')}"
            )
        phase.problems += check(members, stats)

    def expect_cold(self, members: list[MemberJson], stats: ServerStats) -> list[str]:
        problems = self.server_problems(stats, 0)
        stored = sum(int(m.get("baseline", 0)) + int(m.get("new", 0)) for m in members)
        if stored != self.n * self.feeds.items:
            problems.append(
                f"{stored} articles stored, not {self.n * self.feeds.items}"
            )
        if any(m.get("status") != "ok" for m in members):
            problems.append("not every member was fetched and parsed")
        return problems

    def expect_warm(self, members: list[MemberJson], stats: ServerStats) -> list[str]:
        problems = self.server_problems(stats, self.n)
        kinds = Counter(str(m.get("status")) for m in members)
        if kinds["not_modified"] != self.n:
            problems.append(f"warm poll not 100% 304: {dict(kinds)}")
        return problems

    def expect_one_new(self, changed: set[str]) -> Check:
        """The changed feeds parsed with one new article each; the others 304."""

        def check(members: list[MemberJson], stats: ServerStats) -> list[str]:
            problems = self.server_problems(stats, self.n - len(changed))
            wrong = [
                m.get("member")
                for m in members
                if (m.get("status"), int(m.get("new", 0)))
                != (("ok", 1) if m.get("member") in changed else ("not_modified", 0))
            ]
            if wrong:
                problems.append(
                    f"{len(wrong)} members not as expected, e.g. {wrong[0]}"
                )
            return problems

        return check

    # --- rounds ---------------------------------------------------------------

    def config(self, name: str) -> Path:
        """A config.toml listing every feed, with a fresh data directory."""
        directory = self.work / name
        directory.mkdir()
        path = directory / "config.toml"
        members = [(member_id(i), self.url(i)) for i in range(self.n)]
        text = config_toml(members, directory / "data", self.args.concurrency)
        path.write_text(text, encoding="utf-8")
        return path

    def publish_one_new(self) -> set[str]:
        """Every tenth feed gains one new article (and drops its oldest)."""
        changed = set()
        for index in range(0, self.n, ONE_NEW_SHARE):
            self.newest[index] = self.newest.get(index, self.feeds.items - 1) + 1
            self.feeds.write(index, self.newest[index])
            changed.add(member_id(index))
        self.server.reload()
        return changed

    def run_round(self) -> None:
        self.startup()
        self.floor("httpx", conditional=False)
        self.floor("httpx", conditional=True)
        if importlib.util.find_spec("aiohttp") is not None:
            self.floor("aiohttp", conditional=False)
            self.floor("aiohttp", conditional=True)
        elif self.round == 0:
            progress(
                "aiohttp is not installed (pip install -e '.[bench]'): no machine floor"
            )
        config = self.config(f"kairan-{self.round}")
        self.kairan("kairan cold", config, self.expect_cold)
        self.kairan("kairan warm", config, self.expect_warm)
        if self.args.one_new:
            changed = self.publish_one_new()
            self.kairan("kairan one-new", config, self.expect_one_new(changed))
        self.round += 1

    def profile(self, results: Path) -> list[profile.Profile]:
        """Cold, warm (and one-new) once more, into a fresh data dir, under py-spy."""
        config = self.config("profiled")
        argv = [sys.executable, "-m", "aggregator", "--config", str(config)]
        argv += ["poll", "--force", "--json"]
        names = ["cold", "warm"] + (["one-new"] if self.args.one_new else [])
        profiles = []
        for name in names:
            if name == "one-new":
                self.publish_one_new()
            progress(f"profiling kairan {name} …")
            output = results / f"{name}.folded"
            profiles.append(
                profile.record(name, argv, output, cwd=ROOT, timeout=self.args.timeout)
            )
            self.server.stats()
        return profiles


def member_id(index: int) -> str:
    return f"bench-{index:04d}"


def config_toml(members: Sequence[tuple[str, str]], data_dir: Path, limit: int) -> str:
    """The bench's config.toml (JSON strings are valid TOML basic strings)."""
    lines = [
        "[site]",
        'title = "Kairan bench"',
        'base_url = "http://127.0.0.1/"',
        'contact = "https://example.jp/kairan-bench"',
        "",
        "[poll]",
        f"concurrency = {limit}",
        "# every feed is on 127.0.0.1: the per-host limit must not be the bottleneck",
        f"per_host = {min(limit, MAX_PER_HOST)}",
        "timeout = 120",
        "connect_timeout = 60",
        "",
        "[storage]",
        f"data_dir = {_toml_string(str(data_dir))}",
    ]
    for index, (ident, feed) in enumerate(members):
        lines += [
            "",
            "[[members]]",
            f"id = {_toml_string(ident)}",
            f"name = {_toml_string(f'ベンチ市{index:04d}')}",
            f"feed = {_toml_string(feed)}",
        ]
    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- the report ----------------------------------------------------------------------


def show(
    bench: Bench, profiles: Sequence[profile.Profile], sizes: Sequence[int]
) -> dict[str, Any]:
    """Print the tables; return every figure (for --json)."""
    args = bench.args
    by_name = report.summaries(bench.phases)
    ratios = report.ratios(by_name)
    problems = [
        f"round {p.round + 1}, {p.name}: {problem}"
        for p in bench.phases
        for problem in p.problems
    ]
    mean_kib = sum(sizes) / len(sizes) / 1024
    print(
        f"{bench.n} feeds × {args.items} items (mean {mean_kib:.1f} KiB), latency "
        f"{args.latency:g} ms, concurrency {args.concurrency}, {bench.round} round(s)"
    )
    print(report.phase_table(list(by_name.values())))
    print()
    print(report.ratio_table(ratios))
    print(report.rss_line(by_name))
    for item in profiles:
        print()
        print(report.profile_text(item))
    print()
    print("\n".join(["PROBLEMS:", *problems]) if problems else "no functional problems")
    return {
        "machine": report.machine(),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "feed_bytes_mean": sum(sizes) / len(sizes),
        "summaries": [vars_of(s) for s in by_name.values()],
        "ratios": [r.as_dict() for r in ratios],
        "runs": [p.row() for p in bench.phases],
        "profiles": [p.as_dict(report.TOP) for p in profiles],
        "problems": problems,
    }


def vars_of(summary: report.Summary) -> dict[str, object]:
    return {name: getattr(summary, name) for name in summary.__slots__}


# --- entry point ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.poll",
        description="Kairan's polling benchmark: kairan poll against its floors.",
    )
    add = parser.add_argument
    add("-n", "--feeds", type=int, default=1000, help="feeds (members); default 1000")
    add("--items", type=int, default=20, help="items per feed; default 20")
    add("--latency", type=float, default=50.0, help="server ms per response; 50")
    add("--concurrency", type=int, default=50, help="requests in flight; default 50")
    add("--repeat", type=int, default=1, help="rounds (medians are reported); 1")
    add("--one-new", action="store_true", help="then 10%% of feeds gain one item")
    add("--profile", action="store_true", help="profile kairan runs under py-spy")
    add("--json", type=Path, metavar="FILE", help="write every figure to FILE")
    add("--results", type=Path, default=RESULTS, help="where profiles are written")
    add("--timeout", type=float, default=600.0, help="seconds per phase; 600")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    limits = (
        1 <= args.feeds <= 9999,
        1 <= args.items <= 1000,
        1 <= args.concurrency <= 500,
        1 <= args.repeat <= 20,
    )
    if not all(limits):
        parser.error("need feeds 1-9999, items 1-1000, concurrency 1-500, repeat 1-20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.keep) as work:
        feeds = FeedSet(work / "feeds", args.feeds, args.items)
        sizes = feeds.write_all()
        progress(f"{args.feeds} feeds written to {feeds.directory}")
        with ServerProcess(feeds.directory, args.latency, ROOT) as server:
            bench = Bench(args, work, feeds, server)
            for _ in range(args.repeat):
                bench.run_round()
            profiles: list[profile.Profile] = []
            if args.profile:
                args.results.mkdir(parents=True, exist_ok=True)
                profiles = bench.profile(args.results)
    figures = show(bench, profiles, sizes)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(figures, ensure_ascii=False, indent=2)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
