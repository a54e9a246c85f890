"""The publish benchmark's measured phases: a publish, or its raw-write floor.

Run by `bench.publish`, in a process of its own::

    python -m bench.publish_run publish --config FILE --out DIR --now ISO-8601
    python -m bench.publish_run floor --source DIR --out DIR

``publish`` times ``aggregator.publish.publish(db, settings, now, out)`` (read,
build every artefact, write what changed), then, unmeasured, each stage of it
once more on its own (snapshot, each builder) so the report can say where the
time goes. ``floor`` reads every file a publish wrote into memory, then times
writing the same bytes to an empty directory with plain open/write. Both print
one JSON object: wall and CPU seconds of the timed work alone (start-up and
imports excluded), files, bytes, and this process's own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aggregator import logs, publish, runtime
from aggregator.db import unit_of_work
from aggregator.public_dir import MANIFEST
from bench.child import own_peak_rss_kb
from notifiers import atom, jsonfeed, opml, portal
from notifiers.published import Snapshot


def timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """``work()``'s result, its wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def tree(out: Path) -> tuple[int, int]:
    """Files and bytes under ``out``, without publish's manifest."""
    files = [p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST]
    return len(files), sum(p.stat().st_size for p in files)


def stages(args: argparse.Namespace, now: datetime) -> dict[str, float]:
    """Each stage of a publish, timed on its own (wall seconds), for the report."""
    settings = runtime.load(args.config)
    size = settings.publish.feed_size
    with runtime.open_runtime(settings, create=False) as rt, unit_of_work(rt.db):
        snap, snapshot_s, _ = timed(lambda: publish.take_snapshot(rt.db, settings, now))
    snapshot: Snapshot = snap
    builders: dict[str, Callable[[], Any]] = {
        "atom.build_feeds": lambda: atom.build_feeds(snapshot, size),
        "jsonfeed.build_json_feed": lambda: jsonfeed.build_json_feed(snapshot, size),
        "opml.build_members_opml": lambda: opml.build_members_opml(snapshot),
        "portal.build_portal": lambda: portal.build_portal(snapshot, size),
    }
    result = {"take_snapshot": round(snapshot_s, 3)}
    for name, build in builders.items():
        result[name] = round(timed(build)[1], 3)
    return result


def run_publish(args: argparse.Namespace) -> dict[str, Any]:
    settings = runtime.load(args.config)
    # As `kairan publish` runs: routine log lines are kept off (cli/context.py).
    logs.setup("warning", settings.log.format)
    with runtime.open_runtime(settings, create=False) as rt:
        report, wall, cpu = timed(
            lambda: publish.publish(rt.db, settings, args.now, args.out)
        )
    files, size = tree(args.out)
    figures: dict[str, Any] = {
        "wall": round(wall, 3),
        "cpu": round(cpu, 3),
        "files": files,
        "bytes": size,
        "written": len(report.written),
        "unchanged": report.unchanged,
        "removed": len(report.removed),
        "ids_assigned": report.ids_assigned,
        "written_paths": sorted(report.written)[:20],
        "rss_kb": own_peak_rss_kb(),
    }
    if args.stages:
        figures["stages"] = stages(args, args.now)
    return figures


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same files' bytes, written with plain open/write to an empty directory."""
    bodies = [
        (p.relative_to(args.source), p.read_bytes())
        for p in sorted(args.source.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    ]

    def write() -> None:
        for relative, body in bodies:
            target = args.out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                f.write(body)

    _, wall, cpu = timed(write)
    files, size = tree(args.out)
    return {
        "wall": round(wall, 3),
        "cpu": round(cpu, 3),
        "files": files,
        "bytes": size,
        "written": files,
        "rss_kb": own_peak_rss_kb(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_run")
    modes = parser.add_subparsers(dest="mode", required=True)
    one = modes.add_parser("publish")
    one.add_argument("--config", type=Path, required=True)
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--now", type=datetime.fromisoformat, required=True)
    one.add_argument("--stages", action="store_true", help="time each stage too")
    floor = modes.add_parser("floor")
    floor.add_argument("--source", type=Path, required=True)
    floor.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    figures = run_publish(args) if args.mode == "publish" else run_floor(args)
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
