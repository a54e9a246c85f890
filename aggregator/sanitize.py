"""Pure HTML sanitising (nh3 allow-list), URL resolution in markup, and plain text."""

from __future__ import annotations

import html as html_lib
import re
from functools import partial
from urllib.parse import urlsplit

import nh3

from aggregator import urls
from aggregator.fields import strip_controls

_TAGS = frozenset(
    {
        "p", "br", "a", "img", "ul", "ol", "li", "blockquote", "pre", "code",
        "em", "strong", "b", "i", "h2", "h3", "h4", "h5", "h6", "figure",
        "figcaption", "table", "caption", "thead", "tbody", "tfoot", "tr", "th",
        "td", "span",
    }
)  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
# Removed with their content (not just the tags): none of it is article text.
_DROP_WITH_CONTENT = frozenset({"script", "style", "template", "noscript", "iframe"})
_LINK_REL = "noopener noreferrer"
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_IMAGE_SCHEMES = frozenset({"http", "https"})
_DIMENSION = re.compile(r"[0-9]{1,5}%?")

# A space before each block-level tag, so "<p>a</p><p>b</p>" reads "a b" as text.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|br|div|li|tr|td|th|h[1-6]|blockquote|pre|figure|figcaption)\b)",
    re.IGNORECASE,
)
# Collapsed to one space; U+3000 (ideographic space) is kept: in Japanese text it is
# punctuation, not layout.
_WHITESPACE = re.compile(r"[^\S\u3000]+")


def _safe_url(base: str | None, value: str, schemes: frozenset[str]) -> str | None:
    """`value` resolved against `base` if its scheme is allowed, else None.

    nh3 checks schemes before attribute_filter runs and does not check what the
    filter returns, so the check on the resolved URL is ours. A relative URL with
    no base is dropped: it would point into the portal, not to the publisher.
    """
    resolved = urls.resolve(base, strip_controls(value))
    try:
        scheme = urlsplit(resolved).scheme
    except ValueError:
        return None
    return resolved if scheme in schemes else None


def _filter_attribute(base: str | None, tag: str, name: str, value: str) -> str | None:
    if name in {"href", "src"}:
        return _safe_url(base, value, _LINK_SCHEMES if tag == "a" else _IMAGE_SCHEMES)
    if name in {"width", "height"}:
        return value if _DIMENSION.fullmatch(value.strip()) else None
    return strip_controls(value)


def clean_html(html: str, base: str | None) -> str:
    """Allow-listed HTML; relative URLs made absolute; only http(s)/mailto links."""
    cleaned = nh3.clean(
        strip_controls(html),
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=_ATTRIBUTES,
        attribute_filter=partial(_filter_attribute, base),
        link_rel=_LINK_REL,
        url_schemes=set(_LINK_SCHEMES),
    )
    # character references such as &#1; are decoded by the parser, after our first pass
    return strip_controls(cleaned)


def to_text(html: str) -> str:
    """Plain text of markup: tags dropped, entities decoded, whitespace collapsed."""
    if "<" not in html and "&" not in html:  # most titles: no markup to parse
        return _WHITESPACE.sub(" ", strip_controls(html)).strip()
    markup = _BLOCK_TAG.sub(" <", strip_controls(html))
    text = nh3.clean(markup, tags=set(), clean_content_tags=set(_DROP_WITH_CONTENT))
    return _WHITESPACE.sub(" ", strip_controls(html_lib.unescape(text))).strip()
