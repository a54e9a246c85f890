"""normalize: the identity chain, in-document merging, content hash, and finish()."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.models import Article, Candidate, ParsedEntry, ParsedFeed
from aggregator.normalize import finish, identify, identify_all

MEMBER = "yokosuka"
FEED_URL = "https://govgov.ai/rss"
KEY = "n0123456789ab"
TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
JST_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=TOKYO)


def entry(**fields: object) -> ParsedEntry:
    values: dict[str, object] = {
        "guid": None,
        "link": None,
        "title": "タイトル",
        "summary_html": "<p>要約</p>",
        "content_html": None,
        "published": JST_NOON,
        "updated": None,
        "base": FEED_URL,
    }
    values.update(fields)
    return ParsedEntry(**values)  # type: ignore[arg-type]


def feed(*entries: ParsedEntry) -> ParsedFeed:
    return ParsedFeed(
        format="rss20",
        title="t",
        link=None,
        feed_id=None,
        language="ja",
        ttl_minutes=None,
        entries=entries,
    )


def keys_of(e: ParsedEntry, member: str = MEMBER) -> tuple[str, ...]:
    return identify(e, member, FEED_URL).keys


# --- identify ------------------------------------------------------------------

NOTE_VARIANTS = [
    f"https://note.com/kouzoukaikaku/n/{KEY}",
    f"https://note.com/kouzoukaikaku/n/{KEY}?magazine_key=m8f7256e10f43",
    f"https://note.mu/kouzoukaikaku/n/{KEY}",
    f"http://note.mu/kouzoukaikaku/n/{KEY}?magazine_key=m8f7256e10f43",
    f"https://govgov.ai/n/{KEY}",
    f"https://govgov.ai/n/{KEY}?magazine_key=m8f7256e10f43",
]


@pytest.mark.parametrize("link", NOTE_VARIANTS)
@pytest.mark.parametrize("member", ["tokyo", "govgov-magazine"])
def test_note_article_is_keyed_by_note_key_wherever_hosted(
    link: str, member: str
) -> None:
    keys = keys_of(entry(guid=link, link=link), member)
    assert keys[0] == f"note:{KEY}"
    assert keys[1] == f"guid:{member}:{link}"


def test_note_variants_in_one_document_are_one_candidate() -> None:
    entries = [
        entry(guid=u, link=u, title=f"t{i}") for i, u in enumerate(NOTE_VARIANTS)
    ]
    (only,) = identify_all(feed(*entries), MEMBER, FEED_URL)
    assert only.entry.title == "t0"
    assert only.keys[0] == f"note:{KEY}"
    assert {k for k in only.keys if k.startswith("guid:")} == {
        f"guid:{MEMBER}:{u}" for u in NOTE_VARIANTS
    }


def test_note_key_is_taken_from_the_guid_when_the_link_has_none() -> None:
    keys = keys_of(
        entry(guid=f"https://note.com/u/n/{KEY}", link="https://x.example/a")
    )
    assert keys[0] == f"note:{KEY}"


def test_chain_has_every_applicable_key_strongest_first() -> None:
    link = f"https://note.com/u/n/{KEY}"
    assert keys_of(entry(guid="  g-1  ", link=link)) == (
        f"note:{KEY}",
        f"guid:{MEMBER}:g-1",
        f"link:{link}",
    )
    assert keys_of(entry(guid="g-1", link="https://x.example/a")) == (
        f"guid:{MEMBER}:g-1",
        "link:https://x.example/a",
    )
    assert keys_of(entry(link="https://x.example/a")) == ("link:https://x.example/a",)


def test_guid_is_member_scoped_and_link_global() -> None:
    e = entry(guid="1", link="https://x.example/a")
    assert keys_of(e, "a")[0] != keys_of(e, "b")[0]
    assert keys_of(e, "a")[1] == keys_of(e, "b")[1]


@pytest.mark.parametrize(
    "link",
    [
        "https://x.example/post?id=7",
        "HTTPS://X.EXAMPLE:443/post?utm_source=feed&id=7#more",
        "https://x.example/post?id=7&utm_medium=rss&UTM_CAMPAIGN=a&fbclid=z",
        "https://x.example/post?from=top&id=7&gclid=1",
    ],
)
def test_tracking_variants_are_one_canonical_link(link: str) -> None:
    assert keys_of(entry(link=link)) == ("link:https://x.example/post?id=7",)


def test_relative_link_is_resolved_before_canonicalising() -> None:
    assert keys_of(entry(link="/post/1", base=None)) == (
        "link:https://govgov.ai/post/1",
    )
    assert keys_of(entry(link="post/1", base="https://x.example/blog/")) == (
        "link:https://x.example/blog/post/1",
    )


@pytest.mark.parametrize(
    "link",
    ["https://x.example/", "https://x.example", "https://x.example/?utm_source=a"],
)
def test_a_site_root_link_is_not_an_identity(link: str) -> None:
    (key,) = keys_of(entry(link=link))
    assert key.startswith(f"hash:{MEMBER}:")


@pytest.mark.parametrize(
    "link", [None, "", "javascript:alert(1)", "mailto:a@x.example"]
)
def test_missing_guid_and_link_falls_back_to_title_and_date_hash(
    link: str | None,
) -> None:
    (key,) = keys_of(entry(guid="  ", link=link))
    assert re.fullmatch(rf"hash:{MEMBER}:[0-9a-f]{{64}}", key)
    assert keys_of(entry(link=link, title="別")) != (key,)
    assert keys_of(entry(link=link, published=None)) != (key,)
    assert keys_of(entry(link=link, summary_html="<p>edited</p>")) == (key,)


def test_missing_everything_still_has_a_key() -> None:
    (key,) = keys_of(entry(title=None, published=None, summary_html=None))
    assert key.startswith(f"hash:{MEMBER}:")


def test_content_hash_is_versioned_and_ignores_updated() -> None:
    e = entry(guid="g", link="https://x.example/a", updated=JST_NOON)
    first = identify(e, MEMBER, FEED_URL).content_hash
    assert re.fullmatch(r"v1:[0-9a-f]{64}", first)
    bumped = replace(e, updated=JST_NOON + timedelta(days=3))
    assert identify(bumped, MEMBER, FEED_URL).content_hash == first
    tracked = replace(e, link="https://x.example/a?utm_source=x")
    assert identify(tracked, MEMBER, FEED_URL).content_hash == first


@pytest.mark.parametrize(
    "change",
    [
        {"title": "new"},
        {"link": "https://x.example/b"},
        {"summary_html": "<p>new</p>"},
        {"content_html": "<p>full</p>"},
        {"author": "someone"},
        {"thumbnail": "https://x.example/i.png"},
        {"published": JST_NOON + timedelta(minutes=1)},
    ],
)
def test_content_hash_covers_the_visible_fields(change: dict[str, object]) -> None:
    e = entry(guid="g", link="https://x.example/a")
    changed = replace(e, **change)  # type: ignore[arg-type]
    assert identify(changed, MEMBER, FEED_URL).content_hash != (
        identify(e, MEMBER, FEED_URL).content_hash
    )


# --- identify_all ----------------------------------------------------------------


def test_two_items_with_one_guid_are_one_candidate_keeping_the_first() -> None:
    first = entry(guid="g", link="https://x.example/a", title="first")
    second = entry(guid="g", link="https://x.example/a2", title="second")
    other = entry(guid="h", link="https://x.example/b", title="other")
    merged, rest = identify_all(feed(first, second, other), MEMBER, FEED_URL)
    assert merged.entry is first
    assert merged.keys == (
        f"guid:{MEMBER}:g",
        "link:https://x.example/a",
        "link:https://x.example/a2",
    )
    assert rest.entry is other


def test_copies_merge_transitively() -> None:
    a = entry(guid="a", link="https://x.example/1", title="a")
    b = entry(guid="b", link=f"https://note.com/u/n/{KEY}", title="b")
    c = entry(
        guid="a", link=f"https://govgov.ai/n/{KEY}", title="c"
    )  # a's guid, b's key
    other = entry(guid="z", link="https://x.example/z", title="z")
    unrelated, merged = identify_all(feed(other, a, b, c), MEMBER, FEED_URL)
    assert unrelated.entry is other
    assert merged.entry is a
    assert merged.keys == (
        f"note:{KEY}",
        f"guid:{MEMBER}:a",
        f"guid:{MEMBER}:b",
        "link:https://x.example/1",
        f"link:https://note.com/u/n/{KEY}",
        f"link:https://govgov.ai/n/{KEY}",
    )


def test_a_guid_outweighs_a_link_it_shares_with_another_guid() -> None:
    a = entry(guid="a", link="https://x.example/1", title="a")
    b = entry(guid="b", link="https://x.example/2", title="b")
    c = entry(guid="a", link="https://x.example/2", title="c")
    candidates = identify_all(feed(a, b, c), MEMBER, FEED_URL)
    assert [c.entry.title for c in candidates] == ["a", "b"]
    assert candidates[0].keys == (f"guid:{MEMBER}:a", "link:https://x.example/1")
    assert candidates[1].keys == (f"guid:{MEMBER}:b",)


def test_a_link_shared_by_different_guids_is_not_an_identity() -> None:
    home = "https://city.example/ai/"
    items = [entry(guid=f"g{i}", link=home, title=f"t{i}") for i in range(3)]
    candidates = identify_all(feed(*items), MEMBER, FEED_URL)
    assert [c.keys for c in candidates] == [(f"guid:{MEMBER}:g{i}",) for i in range(3)]


def test_a_link_shared_by_guidless_items_with_different_titles_falls_back_to_hash() -> (
    None
):
    home = "https://city.example/ai/"
    items = [entry(link=home, title=t) for t in ("一", "二", "一")]
    candidates = identify_all(feed(*items), MEMBER, FEED_URL)
    assert [c.entry.title for c in candidates] == ["一", "二"]
    assert all(len(c.keys) == 1 and c.keys[0].startswith("hash:") for c in candidates)


def test_exact_copies_without_guid_are_one_candidate() -> None:
    item = entry(link="https://x.example/a?utm_source=1")
    copy = entry(link="https://x.example/a#top")
    (only,) = identify_all(feed(item, copy), MEMBER, FEED_URL)
    assert only.entry is item
    assert only.keys == ("link:https://x.example/a",)


def test_an_empty_feed_has_no_candidates() -> None:
    assert identify_all(feed(), MEMBER, FEED_URL) == ()


# --- properties ------------------------------------------------------------------

_hosts = st.sampled_from(["note.com", "note.mu", "govgov.ai", "x.example", "Y.Example"])
_paths = st.sampled_from(
    [f"/u/n/{KEY}", f"/n/{KEY}", "/n/n00000000000f", "/a", "/a/b", "/", "", "/p?id=1"]
)
_tracking = st.lists(
    st.sampled_from(["utm_source=rss", "fbclid=1", "magazine_key=m1", "from=x"]),
    max_size=3,
)


@st.composite
def _links(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    return f"{scheme}://{draw(_hosts)}{draw(_paths)}"


def _with_tracking(link: str, params: list[str]) -> str:
    if not params:
        return link
    return link + ("&" if "?" in link else "?") + "&".join(params)


_entries = st.builds(
    entry,
    guid=st.one_of(st.none(), st.sampled_from(["g1", " g1 ", "g2", "", f"/u/n/{KEY}"])),
    link=st.one_of(st.none(), _links()),
    title=st.one_of(st.none(), st.sampled_from(["一", "二"])),
    published=st.one_of(st.none(), st.just(JST_NOON)),
    summary_html=st.sampled_from(["<p>a</p>", "<p>b</p>"]),
    updated=st.one_of(st.none(), st.just(JST_NOON)),
)


@given(_entries, st.sampled_from(["<p>edited</p>", None]), st.just(JST_NOON))
def test_keys_are_stable_under_reidentification_and_edits(
    e: ParsedEntry, summary: str | None, updated: datetime
) -> None:
    candidate = identify(e, MEMBER, FEED_URL)
    again = identify(replace(e), MEMBER, FEED_URL)
    assert again == candidate
    edited = replace(e, summary_html=summary, updated=updated, author="someone")
    assert identify(edited, MEMBER, FEED_URL).keys == candidate.keys


@given(_entries, _tracking)
def test_tracking_params_never_change_the_keys(
    e: ParsedEntry, params: list[str]
) -> None:
    tracked = replace(e, link=_with_tracking(e.link, params)) if e.link else e
    assert (
        identify(tracked, MEMBER, FEED_URL).keys == identify(e, MEMBER, FEED_URL).keys
    )


@given(st.lists(st.tuples(_entries, _tracking), max_size=6))
def test_tracking_params_never_change_the_keys_of_a_document(
    items: list[tuple[ParsedEntry, list[str]]],
) -> None:
    plain = [e for e, _ in items]
    tracked = [
        replace(e, link=_with_tracking(e.link, p)) if e.link else e for e, p in items
    ]
    assert _all_keys(identify_all(feed(*plain), MEMBER, FEED_URL)) == _all_keys(
        identify_all(feed(*tracked), MEMBER, FEED_URL)
    )


def _all_keys(candidates: tuple[Candidate, ...]) -> list[tuple[str, ...]]:
    return [c.keys for c in candidates]


_RANK = {"note": 0, "guid": 1, "link": 2, "hash": 3}


@given(st.lists(_entries, max_size=8))
def test_a_document_yields_disjoint_ranked_candidates(
    entries: list[ParsedEntry],
) -> None:
    candidates = identify_all(feed(*entries), MEMBER, FEED_URL)
    every_key = [k for c in candidates for k in c.keys]
    assert len(every_key) == len(set(every_key))  # no key names two candidates
    for c in candidates:
        ranks = [_RANK[k.partition(":")[0]] for k in c.keys]
        assert ranks
        assert ranks == sorted(ranks)
        assert c.entry in entries
    assert len(candidates) <= len(entries)
    assert identify_all(feed(*entries), MEMBER, FEED_URL) == candidates


# --- finish --------------------------------------------------------------------


def fin(**fields: object) -> Article:
    return finish(identify(entry(**fields), MEMBER, FEED_URL), TOKYO, NOW)


READ_MORE_TAILS = [
    f"<br/><a href='https://note.com/u/n/{KEY}'>続きをみる</a>",
    f'<br /><a href="https://govgov.ai/n/{KEY}">続きをみる</a>',
    f"<br>\n  <a href='https://note.com/u/n/{KEY}?magazine_key=m1'> 続きをみる </a>\n",
    f"<a href='https://note.com/u/n/{KEY}'>続きをみる</a>",
    '<br/><a href="https://x.example/a" class="more">Read more…</a>',
    '<a href="https://x.example/a">続きを読む</a>',
]


@pytest.mark.parametrize("tail", READ_MORE_TAILS)
def test_read_more_tail_is_removed_from_the_excerpt(tail: str) -> None:
    article = fin(summary_html="<p name='a' id='b'>横須賀市の取り組み</p>" + tail)
    assert article.summary_html == "<p>横須賀市の取り組み</p>"


def test_read_more_in_the_middle_is_kept() -> None:
    html = "<p>a</p><a href='https://x.example/'>続きをみる</a><p>b</p>"
    assert "続きをみる" in fin(summary_html=html).summary_html


def test_summary_and_content_are_sanitised_against_the_base() -> None:
    article = fin(
        summary_html='<p onclick="x()">s<img src="i.png"></p><script>bad()</script>',
        content_html='<p>c<a href="javascript:alert(1)">x</a><a href="/a">y</a></p>',
        base="https://x.example/blog/",
    )
    assert article.summary_html == '<p>s<img src="https://x.example/blog/i.png"></p>'
    assert article.content_html == (
        '<p>c<a rel="noopener noreferrer">x</a>'
        '<a href="https://x.example/a" rel="noopener noreferrer">y</a></p>'
    )


def test_missing_content_stays_none() -> None:
    assert fin(content_html=None).content_html is None
    assert fin(content_html="<script>x</script>").content_html is None
    assert fin(summary_html=None).summary_html == ""


def test_title_is_plain_text() -> None:
    assert fin(title="  <b>AI</b> &amp; 自治体\x07  ").title == "AI & 自治体"


def test_title_falls_back_to_summary_then_link_then_empty() -> None:
    long_summary = (
        "<p>" + "あ" * 100 + "</p><br/><a href='https://x.example/'>続きをみる</a>"
    )
    assert fin(title="", summary_html=long_summary).title == "あ" * 60
    assert fin(title=None, summary_html="", link="https://x.example/a").title == (
        "https://x.example/a"
    )
    assert fin(title=" ", summary_html=None, link=None).title == ""


def test_link_is_stored_resolved_as_published_not_canonical() -> None:
    link = "https://X.example/a?utm_source=rss#frag"
    assert fin(link=link).link == link
    assert fin(link="/a", base="https://x.example/b/").link == "https://x.example/a"
    assert fin(link="javascript:alert(1)").link is None
    assert fin(link="/a", base=None).link is None


def test_thumbnail_and_avatar_are_resolved_and_http_only() -> None:
    article = fin(
        thumbnail="  https://assets.st-note.com/i.png?width=800\n",
        author_avatar="/avatar.png",
        base="https://note.com/u/rss",
    )
    assert article.thumbnail == "https://assets.st-note.com/i.png?width=800"
    assert article.author_avatar == "https://note.com/avatar.png"
    assert fin(thumbnail="data:image/png;base64,AA").thumbnail is None
    assert fin(author_avatar="javascript:x").author_avatar is None
    assert fin(thumbnail=None).thumbnail is None


def test_naive_dates_are_read_in_the_default_zone_then_stored_in_utc() -> None:
    article = fin(
        published=datetime(2026, 11, 30, 9, 0),  # noqa: DTZ001 (a feed without a zone)
        updated=datetime(2026, 11, 30, 10, 30),  # noqa: DTZ001
    )
    assert article.published == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert article.updated == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    assert article.published.tzinfo is UTC


def test_aware_dates_keep_their_instant() -> None:
    article = fin(published=JST_NOON)
    assert article.published == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert article.published.utcoffset() == timedelta(0)


def test_far_future_dates_are_clamped_to_now() -> None:
    article = fin(
        published=datetime(2099, 1, 1, tzinfo=UTC),
        # an hour west of UTC, the last representable moment overflows in UTC
        updated=datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
    )
    assert article.published == NOW
    assert article.updated == NOW
    soon = NOW + timedelta(hours=23)
    assert fin(published=soon).published == soon


def test_ancient_naive_dates_do_not_overflow() -> None:
    article = fin(published=datetime(1, 1, 1))  # noqa: DTZ001
    assert article.published == datetime.min.replace(tzinfo=UTC)


def test_missing_dates_stay_none() -> None:
    article = fin(published=None, updated=None)
    assert article.published is None
    assert article.updated is None


def test_text_fields_are_stripped() -> None:
    article = fin(author="  横須賀市\x00 ", tags=(" AI ", "", "AI", "行政\x1b"))
    assert article.author == "横須賀市"
    assert article.tags == ("AI", "行政")
    assert fin(author=" \x01 ").author is None


def test_finish_keeps_identity_and_hash() -> None:
    candidate = identify(entry(guid="g"), MEMBER, FEED_URL)
    article = finish(candidate, TOKYO, NOW)
    assert article.keys == candidate.keys
    assert article.content_hash == candidate.content_hash
