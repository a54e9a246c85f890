"""Pure: find hostile DOCTYPE/ENTITY declarations and strip harmless DOCTYPEs.

Entity expansion is how a 100 KB feed becomes gigabytes (billion laughs, one huge
entity referenced many times) and how an XML parser is made to read local files
(external entities, XXE). feedparser's strict parser (expat) refuses some of this,
but its loose fallback re-inserts "safe-looking" internal entities and expands them.
So the decoded text is checked here before any parser sees it:

* a DOCTYPE with an internal subset, or any ``<!ENTITY`` before the root element,
  is refused (`find_declarations` names the problem);
* a plain DOCTYPE (a name and optional PUBLIC/SYSTEM ids, e.g. RSS 0.91's Netscape
  DTD) is removed by `strip_doctype`, so no DTD is ever fetched or read.

Only the prolog (the text before the root element) is examined: a declaration
later in the document is not well-formed XML, and neither expat nor feedparser's
loose parser acts on one there. The prolog is taken generously: a ``<`` inside a
comment or processing instruction does not end it, and keywords are matched without
regard to case, so it covers what feedparser's own regular expressions look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What can start markup in the prolog; the last branch is the root element (the
# ASCII word characters feedparser uses to find where the prolog ends).
_MARKUP = re.compile(r"<(\?|!--|!DOCTYPE|!|[A-Za-z0-9_])", re.IGNORECASE)
_DOCTYPE_TOKEN = re.compile(r"""["'\[>]""")
_SUBSET_TOKEN = re.compile(r"""["'\]]|<!--""")
_SUBSET_END = re.compile(r"\]\s*>")
_ENTITY = re.compile(r"<!ENTITY\s+(%\s*)?([^\s>\"']{0,40})", re.IGNORECASE)
_EXTERNAL_ID = re.compile(r"""\s+(SYSTEM|PUBLIC)\s*["']([^"'\r\n]{0,120})""", re.I)


@dataclass(frozen=True, slots=True)
class _Prolog:
    root: int  # where the root element starts (len(text) when there is none)
    doctype: tuple[int, int] | None = None  # span of the DOCTYPE declaration
    subset: tuple[int, int] | None = None  # the internal subset, "[" to "]>"
    closed: bool = True  # False when the DOCTYPE never ends
    repeated: bool = False  # a second DOCTYPE follows the first


def find_declarations(text: str) -> str | None:
    """The one-line problem when the prolog declares entities or a DTD subset."""
    prolog = _scan(text)
    if not prolog.closed:
        return "hostile XML: the DOCTYPE declaration is not closed"
    if prolog.subset is not None:
        return _describe_subset(text[prolog.subset[0] : prolog.subset[1]])
    if prolog.repeated:
        return "hostile XML: more than one DOCTYPE declaration"
    entity = _ENTITY.search(text, 0, prolog.root)
    if entity is not None:
        return f"hostile XML: entity {_entity_name(entity)} declared outside a DOCTYPE"
    return None


def doctype(text: str) -> str | None:
    """The DOCTYPE declaration itself (for telling RSS 0.91 flavours apart)."""
    span = _scan(text).doctype
    return None if span is None else text[span[0] : span[1]]


def strip_doctype(text: str) -> str:
    """`text` without its DOCTYPE declaration (the same object when it has none).

    Meant for a plain DOCTYPE; one with an internal subset is removed whole as well,
    so that whatever calls this can never hand a parser an entity declaration.
    """
    span = _scan(text).doctype
    if span is None:
        return text
    return text[: span[0]] + text[span[1] :]


def _scan(text: str) -> _Prolog:
    pos = 0
    declared: tuple[int, int] | None = None
    subset: tuple[int, int] | None = None
    while pos < len(text):  # every branch moves pos forward
        found = _MARKUP.search(text, pos)
        if found is None:
            break
        kind = found.group(1)
        if kind == "?":
            pos = _after(text, "?>", found.end())
        elif kind == "!--":
            pos = _after(text, "-->", found.end())
        elif kind.upper() == "!DOCTYPE":
            if declared is not None:
                return _Prolog(found.start(), declared, subset, repeated=True)
            end, subset_start = _doctype_end(text, found.end())
            if end is None:
                return _Prolog(len(text), (found.start(), len(text)), closed=False)
            declared = (found.start(), end)
            if subset_start is not None:
                subset = (subset_start, end)
            pos = end
        elif kind == "!":
            pos = found.end()
        else:
            return _Prolog(found.start(), declared, subset)
    return _Prolog(len(text), declared, subset)


def _doctype_end(text: str, pos: int) -> tuple[int | None, int | None]:
    """End of ``<!DOCTYPE …>`` (None if it never ends) and where its subset opens.

    Quoted public and system ids are skipped, since they may hold ``>`` or ``[``.
    """
    while pos < len(text):
        token = _DOCTYPE_TOKEN.search(text, pos)
        if token is None:
            break
        mark = token.group()
        if mark == ">":
            return token.end(), None
        if mark == "[":
            return _subset_end(text, token.start()), token.start()
        end = text.find(mark, token.end())
        if end < 0:
            break
        pos = end + 1
    return None, None


def _subset_end(text: str, pos: int) -> int:
    """Index just past the ``]>`` that closes an internal subset opened at `pos`."""
    pos += 1
    while pos < len(text):
        token = _SUBSET_TOKEN.search(text, pos)
        if token is None:
            break
        mark = token.group()
        if mark == "]":
            end = _SUBSET_END.match(text, token.start())
            if end is not None:
                return end.end()
            pos = token.end()
        elif mark == "<!--":
            pos = _after(text, "-->", token.end())
        else:
            pos = _after(text, mark, token.end())
    return len(text)


def _after(text: str, marker: str, pos: int) -> int:
    end = text.find(marker, pos)
    return len(text) if end < 0 else end + len(marker)


def _describe_subset(subset: str) -> str:
    entities = list(_ENTITY.finditer(subset))
    for entity in entities:
        external = _EXTERNAL_ID.match(subset, entity.end())
        if external is not None:
            where = f"{external.group(1).upper()} '{external.group(2)}'"
            name = _entity_name(entity)
            return f"hostile XML: DOCTYPE declares external entity {name} ({where})"
    parameters = [e for e in entities if e.group(1)]
    if parameters:
        name = _entity_name(parameters[0])
        return f"hostile XML: DOCTYPE declares parameter entity {name}"
    if entities:
        count = f"{len(entities)} entit{'y' if len(entities) == 1 else 'ies'}"
        return (
            f"hostile XML: DOCTYPE declares {count} "
            f"(first {_entity_name(entities[0])}, {len(subset)} characters in all)"
        )
    return "hostile XML: DOCTYPE has an internal subset"


def _entity_name(entity: re.Match[str]) -> str:
    percent = "%" if entity.group(1) else ""
    return f"'{percent}{entity.group(2)}'"
