"""Profile a phase under py-spy and say where its time went.

py-spy records with ``--gil``: only the thread holding the GIL is sampled. A
poll is GIL-bound (parsing runs in worker threads, but one Python thread runs at a
time), so the GIL is the resource to spend less of; without ``--gil`` a thread
waiting for it is sampled wherever it waits (an import lock, say), which blurs
the picture. The cost: C code that releases the GIL (SQLite executing a
statement) is under-counted.

py-spy's ``raw`` output is collapsed stacks, one ``frame;frame;… count`` a line,
which speedscope and flamegraph.pl read as they are. Samples are summed here by
leaf function (own time), by the innermost Kairan frame (so that time inside
feedparser, nh3, httpx or sqlite3 is charged to the aggregator/ or notifiers/
function that called it), by that frame's module, inclusively by every Kairan
function on the stack, and, for imports run after start-up, by the frame that
imports. Module-level imports at start-up are one bucket of their own.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.child import run_measured

RATE = 200  # samples per second
STARTUP = "(imports at start-up)"
_FRAME = re.compile(r"(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)")
_KAIRAN = ("aggregator/", "notifiers/")  # Kairan's packages
_IMPORTS = frozenset({"_find_and_load", "_handle_fromlist", "_gcd_import"})


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str  # as py-spy shortens it, e.g. aggregator/parse.py, asyncio/events.py

    @property
    def kairan_file(self) -> str | None:
        """The aggregator/… or notifiers/… path when this is Kairan's code."""
        found = [at for at in map(self.file.find, _KAIRAN) if at >= 0]
        return self.file[min(found) :] if found else None

    @property
    def module_level(self) -> bool:
        """A frame of start-up: a module body, or runpy/importlib running one."""
        return self.func == "<module>" or self.file.startswith("<frozen ")

    def __str__(self) -> str:
        return f"{self.func} ({self.kairan_file or self.file})"


@dataclass
class Profile:
    """One phase's samples, summed; ``error`` says why there are none."""

    phase: str
    output: Path
    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    by_function: Counter[str] = field(default_factory=Counter)
    by_module: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    late_imports: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    gil: bool = True  # sampled: the thread holding the GIL (else: busy threads)

    def add(self, frames: Sequence[Frame], count: int) -> None:
        self.samples += count
        if not frames:
            return
        self.own[str(frames[-1])] += count
        importing = next((i for i, f in enumerate(frames) if f.func in _IMPORTS), None)
        if importing is not None:
            if all(f.module_level for f in frames[:importing]):
                self.by_function[STARTUP] += count
                self.by_module[STARTUP] += count
                return
            # an import run by a function after start-up: who keeps importing?
            self.late_imports[str(frames[importing - 1])] += count
        kairan = [f for f in frames if f.kairan_file]
        if kairan:
            self.by_function[str(kairan[-1])] += count
            self.by_module[kairan[-1].kairan_file or ""] += count
        else:
            outside = f"(no Kairan frame: {_package(frames[-1].file)})"
            self.by_function[outside] += count
            self.by_module[outside] += count
        for name in {str(f) for f in kairan}:
            self.inclusive[name] += count

    def seconds(self, samples: int) -> float:
        return samples / RATE

    def views(self) -> list[tuple[str, Counter[str]]]:
        return [
            (
                "by innermost Kairan function (its non-Kairan callees included)",
                self.by_function,
            ),
            ("by Kairan module", self.by_module),
            ("inclusive, Kairan functions", self.inclusive),
            ("own time (leaf function)", self.own),
            ("imports after start-up, by importing frame", self.late_imports),
        ]

    def as_dict(self, top: int) -> dict[str, object]:
        def rows(counter: Counter[str]) -> list[dict[str, object]]:
            return [
                {"name": name, "samples": n, "seconds": round(self.seconds(n), 3)}
                for name, n in counter.most_common(top)
            ]

        return {
            "phase": self.phase,
            "output": str(self.output),
            "samples": self.samples,
            "rate": RATE,
            "gil": self.gil,
            "error": self.error,
            "views": {title: rows(counter) for title, counter in self.views()},
        }


def _package(file: str) -> str:
    """The top-level package (or module) of a shortened path: asyncio, selectors."""
    first = file.split("/", 1)[0]
    return first.removesuffix(".py") or file


def parse_frames(stack: str) -> list[Frame]:
    frames = []
    for text in stack.split(";"):
        match = _FRAME.fullmatch(text.strip())
        if match is not None:
            frames.append(Frame(match["func"], match["file"]))
    return frames


def summarise(phase: str, output: Path, lines: Iterable[str]) -> Profile:
    """Sum py-spy raw lines (``stack count``) into a Profile."""
    profile = Profile(phase, output)
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if count.isdigit():
            profile.add(parse_frames(stack), int(count))
    return profile


def find_pyspy() -> str | None:
    """py-spy beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def record(
    phase: str,
    argv: Sequence[str],
    output: Path,
    *,
    cwd: Path,
    timeout: float,
    gil: bool = True,
) -> Profile:
    """Run ``argv`` under ``py-spy record``; a py-spy failure is reported, not raised.

    ``--nonblocking``: py-spy reads the child's memory without pausing it, so the
    profiled run is not slowed much (a sample may be slightly inconsistent).
    ``gil=False`` samples every thread that is not idle instead: for a program
    with one busy thread, that counts SQLite's work (done without the GIL) too.
    """
    pyspy = find_pyspy()
    if pyspy is None:
        return Profile(phase, output, error="py-spy not found")
    command = [pyspy, "record", "--format", "raw", "--rate", str(RATE)]
    command += ["--gil"] if gil else []
    command += ["--nonblocking", "-o", str(output), "--", *argv]
    run = run_measured(command, cwd=cwd, timeout=timeout)
    problem = run.failure()
    if problem is not None or not output.is_file():
        # e.g. ptrace not permitted in a container without CAP_SYS_PTRACE
        detail = problem or "no output written"
        return Profile(phase, output, error=f"py-spy failed: {detail}")
    # --nonblocking can read a half-written frame: its name is garbage, not UTF-8
    with output.open(encoding="utf-8", errors="replace") as lines:
        summary = summarise(phase, output, lines)
    summary.gil = gil
    return summary
