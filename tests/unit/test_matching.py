"""matching: text normalisation, each filter dimension, and their combination."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.matching import Matcher, normalize_text, subject_for
from aggregator.models import Filters, MatchSubject


def subject(
    member_id: str = "yokosuka",
    member_tags: tuple[str, ...] = ("市",),
    prefecture: str | None = "神奈川県",
    article_tags: tuple[str, ...] = (),
    title: str = "生成AIの活用事例",
    summary_html: str = "<p>職員向けの研修を行いました。</p>",
) -> MatchSubject:
    return subject_for(
        member_id, member_tags, prefecture, article_tags, title, summary_html
    )


def matches(filters: Filters, target: MatchSubject | None = None) -> bool:
    return Matcher.from_filters(filters).matches(target or subject())


# --- normalize_text -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＩ", "ai"),  # full-width Latin
        ("ChatGPT", "chatgpt"),
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana
        ("ｶﾞｲﾄﾞ", "ガイド"),  # half-width voiced marks compose
        ("２０２６年", "2026年"),  # full-width digits
        ("  a\u3000 b\n\tc  ", "a b c"),  # ideographic space collapsed too
        ("Straße", "strasse"),  # casefold, not lower
        ("㈱横須賀", "(株)横須賀"),  # compatibility characters unfolded
        ("", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


@given(st.text())
def test_normalize_text_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.text())
def test_normalized_text_has_single_spaces_only(text):
    normalized = normalize_text(text)
    assert normalized == normalized.strip()
    assert "  " not in normalized
    assert not any(c.isspace() and c != " " for c in normalized)


# --- subject_for ------------------------------------------------------------------


def test_subject_holds_normalised_tags_from_member_prefecture_and_article():
    built = subject(member_tags=("ＡＩ", "Magazine"), article_tags=("ＤＸ", " "))
    assert built.member_id == "yokosuka"
    assert built.tags == frozenset({"ai", "magazine", "神奈川県", "dx"})


def test_subject_without_prefecture():
    assert subject(member_tags=(), prefecture=None).tags == frozenset()


def test_subject_text_is_plain_normalised_title_and_summary():
    built = subject(
        title="ＡＩ　活用",
        summary_html='<p>研修&amp;<b>ﾜｰｸｼｮｯﾌﾟ</b></p><p><a href="https://x/">報告</a></p>',
    )
    assert built.text == "ai 活用\n研修&ワークショップ 報告"


# --- matching -------------------------------------------------------------------


def test_no_filters_match_everything():
    assert matches(Filters())
    assert matches(Filters(), subject(member_id="x", member_tags=(), prefecture=None))


@pytest.mark.parametrize(
    ("members", "expected"),
    [(("yokosuka",), True), (("kobe", "yokosuka"), True), (("kobe",), False)],
)
def test_members_filter(members, expected):
    assert matches(Filters(members=members)) is expected


def test_member_ids_are_compared_exactly():
    assert not matches(Filters(members=("Yokosuka",)))


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (("神奈川県",), True),  # the member's prefecture is a tag
        (("市",), True),  # a member tag
        (("ｐｏｌｉｃｙ",), True),  # the article's own tag, width folded
        (("POLICY", "東京都"), True),  # any one is enough
        (("東京都",), False),
        (("政策",), False),
    ],
)
def test_tags_filter(tags, expected):
    assert matches(Filters(tags=tags), subject(article_tags=("Policy",))) is expected


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        (("生成ＡＩ",), True),  # full-width keyword, half-width title
        (("ai",), True),  # case folded
        (("研修",), True),  # in the summary
        (("ﾁｬｯﾄ", "研修"), True),  # any one is enough
        (("チャット",), False),
        (("事例 職員",), False),  # not across the end of the title
    ],
)
def test_keywords_filter(keywords, expected):
    assert matches(Filters(keywords=keywords)) is expected


def test_half_width_katakana_keyword_matches_full_width_text():
    target = subject(title="チャットボットの導入")
    assert matches(Filters(keywords=("ﾁｬｯﾄﾎﾞｯﾄ",)), target)


def test_keyword_matches_decoded_entities_but_not_markup():
    target = subject(
        summary_html='<p>R&amp;D <a href="https://example.jp/chatgpt">記事</a></p>'
    )
    assert matches(Filters(keywords=("r&d",)), target)
    assert not matches(Filters(keywords=("chatgpt",)), target)
    assert not matches(Filters(keywords=("href",)), target)


def test_keyword_whitespace_is_collapsed_like_the_text():
    target = subject(title="生成AI　活用  ガイド")
    assert matches(Filters(keywords=("AI 活用",)), target)


def test_every_set_dimension_must_match():
    both = Filters(members=("yokosuka",), tags=("神奈川県",), keywords=("研修",))
    assert matches(both)
    assert not matches(Filters(members=("kobe",), keywords=("研修",)))
    assert not matches(Filters(members=("yokosuka",), tags=("東京都",)))
    assert not matches(Filters(tags=("神奈川県",), keywords=("チャット",)))


def test_blank_keywords_and_tags_are_ignored_not_matched_against_everything():
    assert matches(Filters(keywords=(" ", "\u3000")))  # no dimension left: everything
    assert not matches(Filters(keywords=(" ", "チャット")))
    assert not matches(Filters(tags=("", "東京都")))


_ASCII_WORD = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ),
    min_size=1,
    max_size=12,
)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@given(_ASCII_WORD, st.text(max_size=20), st.text(max_size=20))
def test_keyword_matches_its_full_width_form_anywhere_in_the_title(word, before, after):
    target = subject(title=f"{before} {_full_width(word)} {after}")
    assert matches(Filters(keywords=(word,)), target)
    assert matches(Filters(keywords=(word.upper(),)), target)


@given(st.lists(_ASCII_WORD, max_size=3), st.lists(_ASCII_WORD, max_size=3))
def test_tag_filter_is_any_of_the_tags(wanted, present):
    expected = not wanted or bool(
        {normalize_text(w) for w in wanted} & {normalize_text(p) for p in present}
    )
    target = subject(member_tags=(), prefecture=None, article_tags=tuple(present))
    assert matches(Filters(tags=tuple(wanted)), target) is expected
