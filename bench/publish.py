"""Kairan's publish benchmark (issue 4 §6): publishing every artefact, and serving.

    python -m bench.publish [-n/--articles 10000] [--members 2000] [--quick]
                            [--clients 20] [--seconds 5] [--json FILE]

Setup (not measured): a fresh data directory whose database holds N synthetic
articles from M members, written straight in by ``store.insert_entry`` in one
``unit_of_work``; the members are in config.toml. Then, each in a process of
its own:

- ``cold publish`` (`bench.publish_run publish`): ``publish.publish`` into an
  empty directory, every artefact built and written; then each stage once more,
  unmeasured, for where the time goes;
- ``floor write`` (`bench.publish_run floor`): the same files' bytes written to
  an empty directory with plain open/write;
- ``warm publish``: after one new article is stored, the same publish again
  (most files unchanged);
- serving: Kairan's server (`bench.publish_server kairan`) and a minimal
  Starlette floor (`bench.publish_server floor`) in turn, each driven by
  `bench.publish_load` (C httpx clients for D seconds) for GET /feed.atom
  without and with If-None-Match.

No targets are set (issue 4): ratios are reported, never asserted. The exit code
is 1 only when something is functionally wrong (a child failed, a cold publish
that did not write every file, a warm one that wrote nothing, a conditional
load that was not all 304s, or any status other than 200/304).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomlkit

from aggregator import runtime, store
from aggregator.db import unit_of_work
from aggregator.models import Article, EntryStatus
from bench import report
from bench.child import run_measured
from bench.report import json_or_none, progress, workspace

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK = (1_000, 200)  # --quick: articles, members
START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # the first article's time
STEP = timedelta(minutes=7)  # between one article and the next
PREFECTURES: tuple[str, ...] = ("北海道", "宮城県", "東京都", "神奈川県", "愛知県")
PREFECTURES += ("京都府", "大阪府", "兵庫県", "広島県", "福岡県", "熊本県", "沖縄県")
TAGS = ("観光", "防災", "子育て", "移住", "文化")
SERVER_START = 30.0  # seconds a server may take to print its URL
_PACKAGES = ("kairan", "starlette", "uvicorn", "httpx", "lxml", "jinja2")


# --- setup (not measured) ----------------------------------------------------------


def member_id(index: int) -> str:
    return f"bench-{index:04d}"


def config_toml(directory: Path, members: int) -> str:
    return tomlkit.dumps(
        {
            "site": {
                "title": "回覧ベンチ",
                "base_url": "https://kairan.example.jp/",
                "contact": "office@example.jp",
                "timezone": "Asia/Tokyo",
            },
            "storage": {"data_dir": str(directory / "data")},
            "members": [
                {
                    "id": member_id(i),
                    "name": f"ベンチ市{i:04d}",
                    "feed": f"https://note.com/bench{i:04d}/rss",
                    "site": f"https://note.com/bench{i:04d}",
                    "prefecture": PREFECTURES[i % len(PREFECTURES)],
                    "tags": [TAGS[i % len(TAGS)]],
                }
                for i in range(members)
            ],
        }
    )


def published_at(index: int) -> datetime:
    return START + index * STEP


def article(index: int, members: int) -> tuple[Article, str]:
    """Article ``index``, note-shaped, and its member's id."""
    owner = index % members
    key = f"n{index:012x}"
    link = f"https://note.com/bench{owner:04d}/n/{key}"
    paragraphs = "".join(
        f"<p>{owner}番目の市の第{index}号のお知らせ、{p}段落目。"
        "地域の催しや暮らしの情報をお届けします。</p>"
        for p in range(6)
    )
    return (
        Article(
            keys=(f"guid:{member_id(owner)}:{link}",),
            content_hash=f"h{index:015x}",
            title=f"【第{index}号】ベンチ市{owner:04d}からのお知らせ",
            link=link,
            summary_html=f"<p>{owner}番目の市の第{index}号のお知らせです。</p>",
            content_html=paragraphs,
            published=published_at(index),
            updated=None,
            author=f"ベンチ市{owner:04d} 広報課",
            author_avatar=None,
            thumbnail=f"https://assets.example.jp/{key}.jpg" if index % 3 else None,
            tags=(TAGS[index % len(TAGS)],),
        ),
        member_id(owner),
    )


def store_articles(config: Path, first: int, count: int, members: int) -> float:
    """Articles first … first+count-1, stored in one unit_of_work; seconds taken."""
    started = time.perf_counter()
    with runtime.open_runtime(runtime.load(config)) as rt, unit_of_work(rt.db):
        for index in range(first, first + count):
            item, owner = article(index, members)
            seen = published_at(index) + timedelta(minutes=5)
            store.insert_entry(rt.db, item, owner, EntryStatus.NEW, seen)
    return time.perf_counter() - started


def now_after(articles: int) -> datetime:
    """A publish time after article ``articles - 1`` was seen."""
    return published_at(articles) + timedelta(minutes=10)


# --- the measured phases -----------------------------------------------------------


@dataclass
class Run:
    name: str
    wall: float  # the child's own timing of the work
    cpu: float
    process_wall: float  # from spawn to reaped
    process_cpu: float
    output: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        return {
            "phase": self.name,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "process_wall_s": round(self.process_wall, 3),
            "process_cpu_s": round(self.process_cpu, 3),
            "output": self.output,
            "problems": self.problems,
        }


def measured(name: str, argv: Sequence[str], timeout: float) -> Run:
    progress(f"{name} …")
    child = run_measured(argv, cwd=ROOT, timeout=timeout)
    output = json_or_none(child.stdout)
    output = output if isinstance(output, dict) else {}
    run = Run(
        name=name,
        wall=float(output.get("wall") or output.get("seconds") or 0.0),
        cpu=float(output.get("cpu", child.cpu)),
        process_wall=child.wall,
        process_cpu=child.cpu,
        output=output,
    )
    failure = child.failure()
    if failure is not None:
        run.problems.append(failure)
    progress(f"{name}: {run.wall:.2f} s, {run.cpu:.2f} s CPU")
    return run


def publish_argv(config: Path, out: Path, now: datetime, stages: bool) -> list[str]:
    argv = [sys.executable, "-m", "bench.publish_run", "publish"]
    argv += ["--config", str(config), "--out", str(out), "--now", now.isoformat()]
    return argv + (["--stages"] if stages else [])


@dataclass
class Served:
    """One load run against one server, with that server's CPU over its life."""

    name: str
    load: Run
    server_cpu: float
    problems: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return float(self.load.output.get("rps", 0.0))

    def row(self) -> dict[str, object]:
        return {
            "phase": self.name,
            "rps": self.rps,
            "server_cpu_s": round(self.server_cpu, 3),
            "load": self.load.row(),
            "problems": self.problems,
        }


@contextmanager
def server(argv: Sequence[str]) -> Iterator[tuple[str, list[float]]]:
    """A server child: its URL, and (filled in on exit) its CPU seconds."""
    process = subprocess.Popen(
        list(argv), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    cpu: list[float] = []
    try:
        url = process.stdout.readline().decode().strip() if process.stdout else ""
        if not url.startswith("http://"):
            raise RuntimeError(f"{argv[3]} server printed {url!r}, not its URL")
        yield url, cpu
    finally:
        process.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(process.pid, 0)
        process.returncode = 0  # reaped here: Popen must not wait again
        cpu.append(usage.ru_utime + usage.ru_stime)


def serving(kind: str, argv: Sequence[str], args: argparse.Namespace) -> list[Served]:
    """The load without and with If-None-Match, against one fresh server each."""
    runs = []
    for conditional in (False, True):
        name = f"{kind} {'304' if conditional else '200'}"
        with server(argv) as (url, cpu):
            load = [sys.executable, "-m", "bench.publish_load", "--url"]
            load += [url + "feed.atom", "--clients", str(args.clients)]
            load += ["--seconds", str(args.seconds)]
            load += ["--conditional"] if conditional else []
            run = measured(name, load, args.timeout)
        served = Served(name, run, cpu[0] if cpu else 0.0)
        statuses = run.output.get("statuses", {})
        expected = "304" if conditional else "200"
        if set(statuses) != {expected}:
            served.problems.append(f"statuses {statuses}, expected only {expected}")
        runs.append(served)
    return runs


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    setup: dict[str, float] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)

    def run(self) -> None:
        args, work = self.args, self.work
        config = work / "config.toml"
        config.write_text(config_toml(work, args.members), encoding="utf-8")
        progress(f"setup: {args.articles} articles from {args.members} members …")
        self.setup["store_s"] = store_articles(config, 0, args.articles, args.members)
        out = runtime.load(config).public_dir
        cold_argv = publish_argv(config, out, now_after(args.articles), True)
        cold = measured("cold publish", cold_argv, args.timeout)
        files = int(cold.output.get("files", 0))
        if not files or cold.output.get("written") != files:
            cold.problems.append(f"wrote {cold.output.get('written')} of {files}")
        floor_argv = [sys.executable, "-m", "bench.publish_run", "floor"]
        floor_argv += ["--source", str(out), "--out", str(work / "floor")]
        floor = measured("floor write", floor_argv, args.timeout)
        self.setup["one_new_s"] = store_articles(config, args.articles, 1, args.members)
        warm_argv = publish_argv(config, out, now_after(args.articles + 1), False)
        warm = measured("warm publish", warm_argv, args.timeout)
        if not warm.output.get("written"):
            warm.problems.append("a new article changed no file")
        self.runs += [cold, floor, warm]
        kairan = [sys.executable, "-m", "bench.publish_server", "kairan"]
        self.served += serving("kairan", [*kairan, "--config", str(config)], args)
        minimal = [sys.executable, "-m", "bench.publish_server", "floor"]
        feed = ["--feed", str(out / "feed.atom")]
        self.served += serving("floor", [*minimal, *feed], args)
        self.setup["feed_atom_bytes"] = (out / "feed.atom").stat().st_size


# --- the report --------------------------------------------------------------------


def publish_table(runs: Sequence[Run]) -> str:
    rows = [["phase", "wall s", "CPU s", "files", "MB", "written", "peak RSS MB"]]
    for r in runs:
        o = r.output
        rows.append(
            [
                r.name,
                f"{r.wall:.2f}",
                f"{r.cpu:.2f}",
                str(o.get("files", "-")),
                f"{int(o.get('bytes', 0)) / 1e6:.1f}",
                str(o.get("written", "-")),
                f"{int(o.get('rss_kb', 0)) / 1024:.0f}",
            ]
        )
    return report.table(rows)


def serving_table(items: Sequence[Served]) -> str:
    rows = [["server, status", "requests", "seconds", "req/s", "server CPU s", "MB"]]
    for s in items:
        o = s.load.output
        rows.append(
            [
                s.name,
                str(o.get("requests", "-")),
                f"{float(o.get('seconds', 0.0)):.1f}",
                f"{s.rps:.0f}",
                f"{s.server_cpu:.2f}",
                f"{int(o.get('bytes', 0)) / 1e6:.1f}",
            ]
        )
    return report.table(rows)


def ratios(bench: Bench) -> list[tuple[str, float | None, float | None]]:
    """(name, wall ratio, CPU ratio) for publishing; (name, rps ratio, None) serving."""
    by = {r.name: r for r in bench.runs}
    served = {s.name: s for s in bench.served}
    floor = by.get("floor write")
    rows: list[tuple[str, float | None, float | None]] = []
    for name in ("cold publish", "warm publish"):
        run = by.get(name)
        if run is None or floor is None or not floor.wall or not floor.cpu:
            rows.append((f"{name} / floor write", None, None))
            continue
        rows.append(
            (f"{name} / floor write", run.wall / floor.wall, run.cpu / floor.cpu)
        )
    for status in ("200", "304"):
        top, bottom = served.get(f"kairan {status}"), served.get(f"floor {status}")
        value = top.rps / bottom.rps if top and bottom and bottom.rps else None
        rows.append((f"kairan {status} req/s / floor", value, None))
    return rows


def ratio_table(rows: Sequence[tuple[str, float | None, float | None]]) -> str:
    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}×"

    return report.table(
        [["ratio", "wall (req/s)", "CPU"]]
        + [[name, times(a), times(b)] for name, a, b in rows]
    )


def stage_table(stages: dict[str, float]) -> str:
    total = sum(stages.values()) or 1.0
    rows = [["cold stage (re-run alone)", "wall s", "share"]]
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        rows.append([name, f"{seconds:.2f}", f"{100 * seconds / total:.0f}%"])
    return report.table(rows)


def show(bench: Bench) -> dict[str, Any]:
    args = bench.args
    problems = [f"{r.name}: {p}" for r in bench.runs for p in r.problems]
    problems += [f"{s.name}: {p}" for s in bench.served for p in s.problems]
    problems += [f"{s.name}: {p}" for s in bench.served for p in s.load.problems]
    rows = ratios(bench)
    print(
        f"{args.articles} articles from {args.members} members; setup (not measured): "
        f"stored in {bench.setup.get('store_s', 0.0):.2f} s"
    )
    print()
    print(publish_table(bench.runs))
    cold = next((r for r in bench.runs if r.name == "cold publish"), None)
    stages = cold.output.get("stages", {}) if cold else {}
    if stages:
        print()
        print(stage_table(stages))
    print()
    print(
        f"GET /feed.atom ({bench.setup.get('feed_atom_bytes', 0) / 1024:.1f} KiB), "
        f"{args.clients} clients × {args.seconds:g} s"
    )
    print(serving_table(bench.served))
    print()
    print(ratio_table(rows))
    print()
    print("\n".join(["PROBLEMS:", *problems]) if problems else "no functional problems")
    return {
        "machine": report.machine(_PACKAGES),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "setup": bench.setup,
        "runs": [r.row() for r in bench.runs],
        "serving": [s.row() for s in bench.served],
        "ratios": [{"name": n, "wall_or_rps": a, "cpu": b} for n, a, b in rows],
        "problems": problems,
    }


# --- entry point -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish",
        description="Kairan's publish benchmark: publishing and serving the feeds.",
    )
    add = parser.add_argument
    add("-n", "--articles", type=int, help="stored articles; 10000")
    add("--members", type=int, help="members; 2000")
    add("--quick", action="store_true", help="1000 articles from 200 members")
    add("--clients", type=int, default=20, help="concurrent HTTP clients; 20")
    add("--seconds", type=float, help="seconds of load per phase; 5 (--quick 1)")
    add("--json", type=Path, metavar="FILE", help="figures; bench/results/…")
    add("--timeout", type=float, default=600.0, help="seconds per phase; 600")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.quick and (args.articles is not None or args.members is not None):
        parser.error("--quick sets the articles and members; give one or the other")
    articles, members = QUICK if args.quick else (10_000, 2_000)
    args.articles = articles if args.articles is None else args.articles
    args.members = members if args.members is None else args.members
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 5.0
    if args.json is None:
        args.json = RESULTS / f"publish-{args.articles}.json"
    limits = (
        1 <= args.members <= 9_999,
        args.members <= args.articles <= 1_000_000,
        1 <= args.clients <= 500,
        0 < args.seconds <= 600,
    )
    if not all(limits):
        parser.error("need members 1-9999 ≤ articles ≤ 1e6, clients 1-500, seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.keep) as work:
        bench = Bench(args, work)
        bench.run()
    figures = show(bench)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, ensure_ascii=False, indent=2, default=str)
    args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
