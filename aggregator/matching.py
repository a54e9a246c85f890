"""Pure: does a subscriber's filter (members, tags, keywords) match an article.

Ingest asks this for every (new article × active subscriber) pair, so the work is
split: ``subject_for`` normalises an article once, ``Matcher.from_filters`` normalises
a subscriber's filters once, and ``Matcher.matches`` only compares prepared values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from aggregator.models import Filters, MatchSubject
from aggregator.sanitize import to_text


def normalize_text(s: str) -> str:
    """`s` in the form filters compare: NFKC, case-folded, whitespace collapsed.

    NFKC folds the width variants Japanese input produces (全角 "ＡＩ" is "AI",
    half-width "ｶﾞ" is "ガ") and casefold makes "AI" equal "ai"; the ideographic
    space becomes an ordinary space under NFKC and is collapsed with the rest.
    """
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def _normalized_set(values: Iterable[str]) -> frozenset[str]:
    """Normalised values; blank ones dropped, since "" would match everything."""
    return frozenset(n for n in map(normalize_text, values) if n)


class Matcher:
    """One subscriber's filters, normalised once and compared many times."""

    __slots__ = ("_keywords", "_members", "_tags")

    def __init__(
        self,
        members: frozenset[str],
        tags: frozenset[str],
        keywords: tuple[str, ...],
    ) -> None:
        self._members = members
        self._tags = tags
        self._keywords = keywords

    @classmethod
    def from_filters(cls, filters: Filters) -> Matcher:
        # member ids are slugs from config.toml: compared exactly, not normalised
        return cls(
            members=frozenset(filters.members),
            tags=_normalized_set(filters.tags),
            keywords=tuple(sorted(_normalized_set(filters.keywords))),
        )

    def matches(self, subject: MatchSubject) -> bool:
        """Every dimension that is set matches (any value within a dimension).

        ``subject`` must come from `subject_for`: its tags and text are already
        normalised, which is what keeps this call cheap.
        """
        if self._members and subject.member_id not in self._members:
            return False
        if self._tags and self._tags.isdisjoint(subject.tags):
            return False
        return not self._keywords or any(k in subject.text for k in self._keywords)


def subject_for(
    member_id: str,
    member_tags: tuple[str, ...],
    prefecture: str | None,
    article_tags: tuple[str, ...],
    title: str,
    summary_html: str,
) -> MatchSubject:
    """What filters are matched against for one article, normalised once.

    ``title`` is the article's plain-text title; ``summary_html`` its sanitised
    excerpt, reduced to text (tags dropped, entities decoded) before matching, so
    a keyword never matches markup such as an attribute value. The two are
    joined by a newline, which no normalised keyword contains, so a keyword
    cannot match across the end of the title and the start of the summary.
    """
    tags = (*member_tags, *article_tags, *([prefecture] if prefecture else []))
    return MatchSubject(
        member_id=member_id,
        tags=_normalized_set(tags),
        text=f"{normalize_text(title)}\n{normalize_text(to_text(summary_html))}",
    )
