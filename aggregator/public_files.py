"""Serve data/public/ (what `kairan publish` wrote) with conditional GET and gzip.

A feed reader polls feed.atom every few minutes: most answers must be a 304
with no body. Each file gets a strong ETag from a hash of its bytes (a gzip
copy has its own, RFC 9110 §8.8.3), Last-Modified from its mtime (publish only
rewrites a file whose bytes changed), and Cache-Control. Bodies and their gzip
copies are cached in memory per (path, mtime, size).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Published files change at most once per poll cycle; readers may reuse them a
# few minutes, and must revalidate after (a 304 is cheap).
CACHE_CONTROL = "public, max-age=300, must-revalidate"
GZIP_MIN_BYTES = 1024  # below this, gzip's header costs more than it saves
_TYPES = {
    ".atom": "application/atom+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# The portal loads its own CSS and remote article thumbnails, nothing else.
PORTAL_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: http:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str  # an HTTP date
    mtime: float
    media_type: str


@lru_cache(maxsize=4096)
def _load(path: Path, mtime_ns: int, size: int) -> Cached:
    """The file's bytes and validators; keyed by mtime and size, so a rewrite
    (publish replaces files, never edits them in place) is a new entry."""
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:32]
    gzipped = None
    if len(body) >= GZIP_MIN_BYTES:
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)  # mtime=0: stable
    media_type = _TYPES.get(path.suffix) or (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    mtime = mtime_ns / 1e9
    return Cached(
        body, gzipped, f'"{digest}"', formatdate(mtime, usegmt=True), mtime, media_type
    )


class PublicFiles:
    """GET/HEAD for every file under `root`; "/" and directories mean index.html."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def route(self) -> Route:
        return Route("/{path:path}", self.serve, methods=["GET", "HEAD"])

    async def serve(self, request: Request) -> Response:
        path = self.resolve(request.path_params["path"])
        if path is None:  # the app's handler answers with the site's 404 page
            raise HTTPException(404)
        stat = path.stat()
        cached = _load(path, stat.st_mtime_ns, stat.st_size)
        use_gzip = cached.gzipped is not None and _accepts_gzip(request)
        etag = cached.etag[:-1] + '-gz"' if use_gzip else cached.etag
        headers = {
            "ETag": etag,
            "Last-Modified": cached.last_modified,
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
        }
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = PORTAL_CSP
        if _not_modified(request, etag, cached.mtime):
            return Response(status_code=304, headers=headers)
        body = cached.gzipped if use_gzip and cached.gzipped else cached.body
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(body, headers=headers, media_type=cached.media_type)

    def resolve(self, raw: str) -> Path | None:
        """The file a URL path names, or None: nothing outside root, no dotfiles."""
        parts = PurePosixPath(raw).parts
        if any(p in ("..", "") or p.startswith(".") or "\\" in p for p in parts):
            return None
        candidate = self.root.joinpath(*parts)
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            resolved = candidate.resolve(strict=True)
            root = self.root.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(root) or not resolved.is_file():
            return None
        return resolved


def _accepts_gzip(request: Request) -> bool:
    for item in request.headers.get("accept-encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00")
    return False


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    """RFC 9110 §13.1: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since
