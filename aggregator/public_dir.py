"""data/public/ on disk: atomic writes of what changed, leftovers removed.

Files are replaced atomically (temp file + rename) and only when their bytes
changed, so an unchanged feed keeps its mtime, and with it its Last-Modified.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from aggregator.errors import StoreError
from notifiers.published import Artefact

MANIFEST = ".kairan-published.json"  # what the last publish wrote, to remove leftovers


def write_artefacts(
    out: Path, artefacts: Sequence[Artefact]
) -> tuple[list[str], int, list[str]]:
    """Write what changed, atomically; remove files the last publish wrote and
    this one did not (a removed member's page). Returns written, unchanged, removed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        previous = _manifest(out)
        written: list[str] = []
        for artefact in artefacts:
            target = _inside(out, artefact.path)
            if target.is_file() and target.read_bytes() == artefact.body:
                continue
            _replace(target, artefact.body)
            written.append(artefact.path)
        paths = sorted(a.path for a in artefacts)
        removed = sorted(set(previous) - set(paths))
        for path in removed:
            _inside(out, path).unlink(missing_ok=True)
        if paths != previous:
            _replace(out / MANIFEST, json.dumps(paths, ensure_ascii=False).encode())
    except OSError as e:
        raise StoreError(f"{out}: cannot publish: {e.strerror or e}") from None
    return written, len(artefacts) - len(written), removed


def _inside(out: Path, path: str) -> Path:
    """The file for an artefact path; a path that could leave `out` is a bug."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe artefact path {path!r}")
    return out.joinpath(*parts)


def _manifest(out: Path) -> list[str]:
    try:
        listed = json.loads((out / MANIFEST).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    return [p for p in listed if isinstance(p, str)]


def _replace(target: Path, body: bytes) -> None:
    # Temp file in the same directory, then rename: readers (the server, a web
    # server in front) see the old file or the new one, never half of one.
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
