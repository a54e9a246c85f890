"""Pure URL helpers: canonical form for identity, note article keys, hosts, resolution.

Everything here is total: junk input gives a best-effort string (or None), never an
exception, because feeds are untrusted and one bad link must not fail a whole feed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urljoin, urlsplit

# WHATWG URL §4.4 (basic URL parser): leading/trailing C0 controls and spaces are
# stripped, and ASCII tab/newline are removed wherever they appear.
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_NEWLINE = re.compile(r"[\t\n\r]")

_ABSOLUTE_WEB = re.compile(r"https?://[^/?#]", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PORT = re.compile(r"[0-9]*")  # ASCII only: str.isdigit also accepts "²"

# Parameters that only say where a click came from (SPEC "Identity and dedup"); note
# adds magazine_key and from to the same article reached through a magazine.
_TRACKING_NAMES = frozenset(
    {"fbclid", "gclid", "yclid", "mc_cid", "mc_eid", "magazine_key", "from"}
)

# RFC 3986 §6.2.2.1: hex digits in percent-escapes are case-insensitive; upper case is
# the normal form. Decoding escapes is not done: it can create new escapes ("%%341").
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# Spaces and controls are percent-encoded, as the WHATWG parser does for path and
# query (§4.4), so the result never ends with something a parser would trim.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")

# note article paths: /<urlname>/n/<key> on note.com and note.mu, /n/<key> on a
# note pro custom domain (NOTE-FEEDS.md "Addresses"). A key is "n" + 12 hex.
_NOTE_PATH = re.compile(r"/(?:[^/]+/)?n/(n[0-9a-fA-F]{12})/?")


def _clean(url: str) -> str:
    return _TAB_NEWLINE.sub("", url).strip(_C0_OR_SPACE)


def _split_netloc(netloc: str) -> tuple[str, str, str]:
    """Split "userinfo@host:port"; a host with a colon must be an IP literal."""
    userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":")
    # RFC 3986 §3.2.2: only a bracketed IP literal may contain ":"; anything else is
    # kept whole, so that junk never loses characters and stays a fixed point.
    bracketed = host.startswith("[") and host.endswith("]")
    if not colon or not _PORT.fullmatch(port) or (":" in host and not bracketed):
        return userinfo + at, hostport, ""
    return userinfo + at, host, port


def _netloc(scheme: str, netloc: str) -> str:
    userinfo, host, port = _split_netloc(netloc)
    keep_port = port != "" and int(port) != _DEFAULT_PORTS[scheme]
    return userinfo + host.lower() + (f":{int(port)}" if keep_port else "")


def _is_tracking(param: str) -> bool:
    name = unquote(param.partition("=")[0]).lower()
    return name.startswith("utm_") or name in _TRACKING_NAMES


def _query(query: str) -> str:
    kept = [p for p in query.split("&") if p and not _is_tracking(p)]
    return "&".join(kept)


def _escapes(text: str) -> str:
    encoded = _UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}", text)
    return _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), encoded)


def canonical(url: str) -> str:
    """The form of an http(s) URL used as a global identity key.

    Scheme and host lower-cased, default port, fragment and tracking parameters
    dropped, empty path made "/", percent-escapes upper-cased (spaces and controls
    encoded); the remaining query keeps its order. Other schemes and unparsable
    input are returned trimmed only.
    """
    cleaned = _clean(url)
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return cleaned
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return cleaned
    path = _escapes(parts.path) or "/"
    query = _escapes(_query(parts.query))
    netloc = _netloc(parts.scheme, parts.netloc)
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def note_key(url: str) -> str | None:
    """The note article key ("n" + 12 hex, lower-case) of an article URL, else None."""
    try:
        parts = urlsplit(_clean(url))
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return None
    match = _NOTE_PATH.fullmatch(parts.path)
    return match.group(1).lower() if match else None


def host(url: str) -> str:
    """The lower-cased host of a URL, without port, userinfo or IPv6 brackets."""
    try:
        netloc = urlsplit(_clean(url)).netloc
    except ValueError:
        return ""
    return _split_netloc(netloc)[1].strip("[]").lower()


def resolve(base: str | None, url: str) -> str:
    """`url` made absolute against `base` (RFC 3986 §5); trimmed `url` on failure."""
    cleaned = _clean(url)
    if not base or _ABSOLUTE_WEB.match(cleaned):
        # already absolute: urljoin would return it as it is, at a cost that
        # shows in the cold-poll profile (every href and src of every entry)
        return cleaned
    try:
        return urljoin(_clean(base), cleaned)
    except ValueError:
        return cleaned


def is_web(url: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in _DEFAULT_PORTS and bool(parts.netloc)


def endpoint_key(url: str) -> str:
    """A webhook URL's uniqueness key: scheme, host and default port normalised.

    Unlike `canonical`, the query is kept whole: an endpoint's parameters (a
    channel name, a receiver's token) are part of where it is.
    """
    parts = urlsplit(_clean(url))
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return _clean(url)
    netloc = _netloc(scheme, parts.netloc)
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path or '/'}{query}"
