"""Pure helpers for parsed text fields, shared by the parsers and normalise.

Control characters, absolute URLs and the two date formats feeds use.
"""

from __future__ import annotations

import email.utils
import html
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # RFC 3986 §3.1, with authority

# C0/C1 controls except tab and newline, DEL, the noncharacters U+FFFE/U+FFFF (not
# allowed in XML 1.0 §2.2) and lone surrogates (which JSON "\ud800" escapes can
# produce, and which cannot be encoded as UTF-8).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")

# Zone names that RFC 822 does not define but feeds use; email.utils reads an
# unknown name as "no zone", which would make a JST time nine hours wrong.
_UTC9 = timezone(timedelta(hours=9))
_EXTRA_ZONES = {"JST": _UTC9, "KST": _UTC9}


def strip_controls(text: str) -> str:
    """`text` without controls (tab, newline kept), U+FFFE/U+FFFF or surrogates."""
    return _CONTROLS.sub("", text)


def clean_text(value: object) -> str | None:
    """A string field with control characters removed; None when absent or blank."""
    if not isinstance(value, str):
        return None
    cleaned = strip_controls(value)
    return cleaned if cleaned.strip() else None


def stripped_text(value: object) -> str | None:
    """An id, URL or tag: cleaned and stripped of surrounding whitespace."""
    cleaned = clean_text(value)
    return None if cleaned is None else cleaned.strip()


def absolute(base: str, value: object) -> str | None:
    """A URL field made absolute against `base`; None when absent."""
    cleaned = stripped_text(value)
    if cleaned is None or _SCHEME.match(cleaned):
        return cleaned  # already absolute: kept as given (and urljoin is costly)
    return urljoin(base, cleaned)


def plain_to_html(value: object) -> str | None:
    """Plain text escaped so that it can travel in an *_html field."""
    cleaned = clean_text(value)
    return None if cleaned is None else html.escape(cleaned, quote=False)


def parse_date(raw: str) -> datetime | None:
    """ISO 8601 / RFC 3339 or RFC 822 date → datetime, aware only if a zone was given.

    RFC 822's "-0000" means "zone unknown" (RFC 5322 §3.3), so it gives a naive
    datetime; so does a time with no zone at all. None when neither format fits.
    """
    text = raw.strip()
    if not text:
        return None
    return _iso8601(text) or _rfc822(text)


def _iso8601(text: str) -> datetime | None:
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _rfc822(text: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        zone = _EXTRA_ZONES.get(text.rsplit(None, 1)[-1].upper())
        if zone is not None:
            return parsed.replace(tzinfo=zone)
    return parsed
