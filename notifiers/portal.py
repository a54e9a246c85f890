"""The portal: index.html, a page per member and per tag or prefecture, portal.css.

Every page is static and plain HTML (no script, no inline style, nothing loaded
from elsewhere but the article thumbnails), so it works from any web server, from
file://, and under the server's Content-Security-Policy (default-src 'self';
img-src 'self' https:; style-src 'self'). Links between portal pages are
relative; narrowing by member, prefecture or tag is a link to its static page.

Accessibility (WCAG 2.1 AA, JIS X 8341-3:2016): lang, landmarks, a skip link,
headings in order, labelled form fields, visible focus, and colours with at least
4.5:1 contrast live in templates/portal; tests/browser checks them with axe-core.
"""

from __future__ import annotations

import functools
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup

from aggregator.fields import strip_controls
from aggregator.models import Cadence, Schedule
from notifiers import render
from notifiers.email_message import sanitize_header_text
from notifiers.published import (
    Artefact,
    PublishedArticle,
    PublishedMember,
    Snapshot,
    tag_slug,
)

HTML_TYPE = "text/html; charset=utf-8"
CSS_TYPE = "text/css; charset=utf-8"
STYLESHEET = "portal.css"
NAME_LENGTH = 200  # characters of a member, prefecture or tag name shown
# JIS X 0401 order, the order Japanese readers expect prefectures in; any other
# prefecture value follows them, by name.
PREFECTURES = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県",
    "栃木県", "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県",
    "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県", "愛知県", "三重県",
    "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県",
    "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県",
    "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
)  # fmt: skip
_PREFECTURE_ORDER = {name: i for i, name in enumerate(PREFECTURES)}


@dataclass(frozen=True, slots=True)
class Words:
    """The portal's own phrases in one language; `{…}` fields are filled here.

    The subscribe form reuses the follower pages' words (templates/pages/text.toml),
    so the portal's form and GET /subscribe read the same.
    """

    lang: str
    skip: str
    nav: str  # the accessible name of the site navigation
    latest: str
    members: str
    browse: str
    prefectures: str
    tags: str
    subscribe: str  # the navigation's link to the form
    feeds: str
    feed_atom: str
    feed_json: str
    opml: str
    page_feed: str  # {name}
    no_articles: str
    article_one: str  # {n}
    article_many: str  # {n}
    last_article: str  # before the date of a member's newest article
    no_last_article: str
    failing: str  # {reason}: shown as text, never as a colour alone
    failing_label: str
    showing: str  # {shown} {total}
    website: str
    tag_heading: str  # {tag}
    tag_members: str
    choose_members: str
    updated: str
    title: str  # {page} {site}


WORDS = {
    "ja": Words(
        lang="ja",
        skip="本文へ移動",
        nav="サイト内",
        latest="新着記事",
        members="自治体一覧",
        browse="地域・タグから探す",
        prefectures="都道府県",
        tags="タグ",
        subscribe="メールで受け取る",
        feeds="フィード",
        feed_atom="Atom フィード",
        feed_json="JSON Feed",
        opml="自治体一覧（OPML）",
        page_feed="{name}の Atom フィード",
        no_articles="まだ記事はありません。",
        article_one="記事 {n}件",
        article_many="記事 {n}件",
        last_article="最新記事",
        no_last_article="記事なし",
        failing="フィードを取得できていません（{reason}）",
        failing_label="注意",
        showing="全{total}件のうち、新しい{shown}件を表示しています。",
        website="公式サイト",
        tag_heading="「{tag}」の記事",
        tag_members="この分類の自治体",
        choose_members="発信元を選んで登録する",
        updated="最終更新",
        title="{page} | {site}",
    ),
    "en": Words(
        lang="en",
        skip="Skip to main content",
        nav="Site",
        latest="Latest articles",
        members="Members",
        browse="Browse by prefecture or tag",
        prefectures="Prefectures",
        tags="Tags",
        subscribe="Get them by e-mail",
        feeds="Feeds",
        feed_atom="Atom feed",
        feed_json="JSON Feed",
        opml="Member list (OPML)",
        page_feed="Atom feed for {name}",
        no_articles="No articles yet.",
        article_one="{n} article",
        article_many="{n} articles",
        last_article="latest",
        no_last_article="no articles",
        failing="its feed cannot be read ({reason})",
        failing_label="Warning",
        showing="Showing the newest {shown} of {total} articles.",
        website="Website",
        tag_heading="Articles: {tag}",
        tag_members="Members in this group",
        choose_members="Choose publishers and subscribe",
        updated="Last updated",
        title="{page} | {site}",
    ),
}


# --- what the templates print: every field already plain, safe text --------------


@dataclass(frozen=True, slots=True)
class Stamp:
    """A time as shown (site timezone) and as <time datetime> (ISO 8601)."""

    text: str
    iso: str


@dataclass(frozen=True, slots=True)
class Card:
    """One article. `*_href` are relative to the portal root; templates prefix them."""

    title: str
    url: str | None  # http(s) only
    thumbnail: str | None  # https, or on the portal's own origin
    member: str
    member_href: str | None  # None when the member is not published (paused)
    prefecture: str | None
    prefecture_href: str | None
    published: Stamp
    excerpt: str


@dataclass(frozen=True, slots=True)
class MemberView:
    id: str
    name: str
    href: str
    feed_href: str
    site: str | None  # http(s) only
    prefecture: str | None
    prefecture_href: str | None
    count: str
    last_article: Stamp | None
    failing: str | None  # the whole visible note


@dataclass(slots=True, eq=False)  # eq=False: hashed by identity, to dedupe
class Topic:
    """A tag or prefecture: one page, tags/{slug}.html, and its feed."""

    slug: str
    name: str
    prefecture: bool = False
    total: int = 0
    articles: list[PublishedArticle] = field(default_factory=list)
    members: list[PublishedMember] = field(default_factory=list)

    @property
    def href(self) -> str:
        return f"tags/{quote(self.slug)}.html"

    @property
    def feed_href(self) -> str:
        return f"tags/{quote(self.slug)}.atom"


@dataclass(frozen=True, slots=True)
class Feed:
    type: str
    title: str
    href: str  # relative to the portal root


@dataclass(frozen=True, slots=True)
class Choice:
    id: str
    name: str
    checked: bool


@dataclass(frozen=True, slots=True)
class SubscribeForm:
    action: str
    intro: str
    schedules: tuple[tuple[str, str], ...]
    choices: tuple[Choice, ...]  # none: every member, and a link to the full form


# --- building --------------------------------------------------------------------


def build_portal(snapshot: Snapshot, feed_size: int) -> list[Artefact]:
    """index.html, members/{id}.html, tags/{slug}.html and portal.css.

    Each member and tag page lists its newest `feed_size` articles, as the
    feeds do. Raises ValueError for an unknown language or timezone, or a
    feed_size below 1. The same snapshot always gives the same bytes.
    """
    if feed_size < 1:
        raise ValueError(f"feed_size must be at least 1, not {feed_size}")
    portal = _Portal(snapshot, feed_size)
    return [
        Artefact(STYLESHEET, _stylesheet(), CSS_TYPE),
        portal.index(),
        *(portal.member_page(m) for m in snapshot.members),
        *(portal.topic_page(t) for t in portal.topics),
    ]


class _Portal:
    """One build: the snapshot's views, computed once and shared by every page."""

    def __init__(self, snapshot: Snapshot, feed_size: int) -> None:
        site = snapshot.site
        words = WORDS.get(site.language)
        if words is None:
            raise ValueError(f"no portal words for language {site.language!r}")
        self.words = words
        self.messages = render.MESSAGES[site.language]
        self.zone = _zone(site.timezone)
        self.snapshot = snapshot
        self.feed_size = feed_size
        self.members = {m.id: m for m in snapshot.members}
        self.by_member: dict[str, list[PublishedArticle]] = defaultdict(list)
        for article in snapshot.articles:
            latest = self.by_member[article.member_id]
            if len(latest) < feed_size:
                latest.append(article)
        # one build slugs the same few tags tens of thousands of times
        self.slug: Callable[[str], str] = functools.cache(tag_slug)
        self.topics = _topics(snapshot, self.members, feed_size, self.slug)
        self._cards: dict[str, Card] = {}
        self._html: dict[tuple[str, str], Markup] = {}  # (article id, root) → card
        self.updated = self.stamp(snapshot.built_at, with_time=True)
        self.views = {m.id: self._member_view(m) for m in snapshot.members}

    # views

    def stamp(self, moment: datetime, *, with_time: bool = False) -> Stamp:
        local = moment.astimezone(self.zone)
        show = render.format_datetime if with_time else render.format_date
        return Stamp(show(local, self.messages), local.isoformat(timespec="seconds"))

    def cards(self, articles: Iterable[PublishedArticle], root: str) -> list[Markup]:
        """Each article's card, rendered once per depth and shared by its pages."""
        return [self._card_html(a, root) for a in articles]

    def _card_html(self, article: PublishedArticle, root: str) -> Markup:
        key = (article.id, root)
        found = self._html.get(key)
        if found is None:
            view = self._cards.get(article.id) or self._card(article)
            self._cards[article.id] = view
            found = self._html[key] = _macro("card")(view, root)
        return found

    def _card(self, article: PublishedArticle) -> Card:
        member = self.members.get(article.member_id)
        prefecture = _prefecture(member) if member else None
        return Card(
            title=sanitize_header_text(article.title, render.TITLE_LENGTH)
            or self.messages.untitled,
            url=render.web_url(article.link or ""),
            thumbnail=self._thumbnail(article.thumbnail),
            member=_name(member.name if member else article.author),
            member_href=_member_href(member.id) if member else None,
            prefecture=_name(prefecture) if prefecture else None,
            prefecture_href=self._topic_href(prefecture) if prefecture else None,
            published=self.stamp(article.published),
            excerpt=render.excerpt(article.summary_html),
        )

    def _thumbnail(self, url: str | None) -> str | None:
        """`url` when the portal's CSP loads it (img-src 'self' https:), else None:
        an image the browser would refuse is not shown at all."""
        safe = render.web_url(url or "")
        if safe is None:
            return None
        if urlsplit(safe).scheme == "https" or _origin(safe) == _origin(
            self.snapshot.site.base_url
        ):
            return safe
        return None

    def _topic_href(self, tag: str) -> str:
        return f"tags/{quote(self.slug(tag))}.html"

    def _member_view(self, member: PublishedMember) -> MemberView:
        w = self.words
        prefecture = _prefecture(member)
        count = w.article_one if member.articles == 1 else w.article_many
        failing = _name(member.failing) if member.failing else ""
        return MemberView(
            id=member.id,
            name=_name(member.name),
            href=_member_href(member.id),
            feed_href=f"members/{quote(member.id)}.atom",
            site=render.web_url(member.site or ""),
            prefecture=_name(prefecture) if prefecture else None,
            prefecture_href=self._topic_href(prefecture) if prefecture else None,
            count=count.format(n=member.articles),
            last_article=self.stamp(member.last_article)
            if member.last_article
            else None,
            failing=w.failing.format(reason=failing) if member.failing else None,
        )

    def showing(self, shown: int, total: int) -> str | None:
        """The note that a page lists only the newest of more articles."""
        if shown >= total:
            return None
        return self.words.showing.format(shown=shown, total=total)

    # pages

    def index(self) -> Artefact:
        latest = self.snapshot.articles[: self.feed_size]
        return self.page(
            "index.html",
            "index.html.j2",
            page_title=None,
            cards=self.cards(latest, ""),
            directory=[self.views[m.id] for m in self.snapshot.members],
            prefectures=[t for t in self.topics if t.prefecture],
            tags=[t for t in self.topics if not t.prefecture],
            form=self.form(()),
            updated=self.updated,
        )

    def member_page(self, member: PublishedMember) -> Artefact:
        view = self.views[member.id]
        articles = self.by_member.get(member.id, [])
        return self.page(
            f"members/{member.id}.html",
            "member.html.j2",
            page_title=view.name,
            feed=Feed(
                "application/atom+xml",
                self.words.page_feed.format(name=view.name),
                view.feed_href,
            ),
            member=view,
            cards=self.cards(articles, "../"),
            showing=self.showing(len(articles), member.articles),
            form=self.form((Choice(member.id, view.name, checked=True),)),
            updated=self.newest(articles),
        )

    def topic_page(self, topic: Topic) -> Artefact:
        heading = self.words.tag_heading.format(tag=topic.name)
        return self.page(
            f"tags/{topic.slug}.html",
            "tag.html.j2",
            page_title=heading,
            feed=Feed(
                "application/atom+xml",
                self.words.page_feed.format(name=topic.name),
                topic.feed_href,
            ),
            heading=heading,
            cards=self.cards(topic.articles, "../"),
            showing=self.showing(len(topic.articles), topic.total),
            members=[self.views[m.id] for m in topic.members],
            form=self.form(
                tuple(Choice(m.id, _name(m.name), False) for m in topic.members)
            ),
            updated=self.newest(topic.articles),
        )

    def newest(self, articles: Sequence[PublishedArticle]) -> Stamp | None:
        """A page's own last change, not the site's: a new article elsewhere must
        not rewrite it (publish only replaces files whose bytes changed)."""
        latest = max((a.updated for a in articles), default=None)
        return None if latest is None else self.stamp(latest, with_time=True)

    def form(self, choices: tuple[Choice, ...]) -> SubscribeForm | None:
        """The sign-up form (aggregator/signup.py's fields), when one is served."""
        site = self.snapshot.site
        action = render.web_url(site.subscribe_url or "")
        if action is None:
            return None
        words = _form_words(self.words.lang)
        hour = Schedule().hour
        return SubscribeForm(
            action=action,
            intro=words["intro"].format(site=site.title),
            schedules=tuple((str(c), words[str(c)].format(hour=hour)) for c in Cadence),
            choices=choices,
        )

    def page(
        self,
        path: str,
        template: str,
        *,
        page_title: str | None,
        feed: Feed | None = None,
        updated: Stamp | None = None,
        **context: Any,
    ) -> Artefact:
        """One page; `feed` is its own Atom feed, announced before the site's."""
        site = self.snapshot.site
        w = self.words
        feeds = [
            Feed("application/atom+xml", w.feed_atom, "feed.atom"),
            Feed("application/feed+json", w.feed_json, "feed.json"),
        ]
        html = (
            render.environment()
            .get_template(f"portal/{template}")
            .render(
                t=w,
                s=_form_words(w.lang),
                site=site,
                title=w.title.format(page=page_title, site=site.title)
                if page_title
                else site.title,
                root="../" * path.count("/"),
                alternates=[feed, *feeds] if feed else feeds,
                feeds=feeds,
                feed=feed,
                updated=updated,
                **context,
            )
        )
        return Artefact(path, html.encode("utf-8"), HTML_TYPE)


def _topics(
    snapshot: Snapshot,
    members: dict[str, PublishedMember],
    feed_size: int,
    slugged: Callable[[str], str],
) -> list[Topic]:
    """Every tag and prefecture in use, by slug (two names with one slug share a
    page), prefectures first in JIS order, then tags by name."""
    topics: dict[str, Topic] = {}

    def topic(tag: str) -> Topic | None:
        # blank tags are skipped and the raw tag is slugged, as notifiers/atom.py
        # does, so that tags/{slug}.html and tags/{slug}.atom always pair up
        if not _files(tag):
            return None
        slug = slugged(tag)
        shown = _name(tag) or slug
        found = topics.get(slug)
        if found is None:
            found = topics[slug] = Topic(slug, shown)
        elif shown < found.name:
            found.name = shown  # the same name whatever order the snapshot is in
        return found

    for member in snapshot.members:
        for t in dict.fromkeys(_present(map(topic, _member_tags(member)))):
            t.members.append(member)
        if member.prefecture and (p := topic(member.prefecture)):
            p.prefecture = True
    for article in snapshot.articles:
        owner = members.get(article.member_id)
        names = (*(_member_tags(owner) if owner else ()), *article.tags)
        for t in dict.fromkeys(_present(map(topic, names))):
            t.total += 1
            if len(t.articles) < feed_size:
                t.articles.append(article)
    return sorted(topics.values(), key=_topic_order)


def _member_tags(member: PublishedMember) -> tuple[str, ...]:
    """A member's tags and prefecture: what an article of it is filed under too,
    as subscribers' tag filters see it (aggregator/matching.py)."""
    return (*member.tags, *((member.prefecture,) if member.prefecture else ()))


def _files(tag: str) -> bool:
    """Whether a tag has a page: it is not blank (once controls are dropped)."""
    return bool(strip_controls(tag).strip())


def _prefecture(member: PublishedMember) -> str | None:
    """The member's prefecture when it has a page (a link to it will not 404)."""
    prefecture = member.prefecture
    return prefecture if prefecture and _files(prefecture) else None


def _present(topics: Iterable[Topic | None]) -> Iterable[Topic]:
    return (t for t in topics if t is not None)


def _topic_order(topic: Topic) -> tuple[int, int, str]:
    return (
        0 if topic.prefecture else 1,
        _PREFECTURE_ORDER.get(topic.name, len(PREFECTURES)),
        topic.name,
    )


def _macro(name: str) -> Callable[..., Markup]:
    """A macro of templates/portal/_parts.html.j2, to call from Python (Markup:
    autoescaped inside, so pages print it without escaping it twice)."""
    module = render.environment().get_template("portal/_parts.html.j2").module
    return getattr(module, name)  # type: ignore[no-any-return]


def _name(text: str) -> str:
    return sanitize_header_text(text, NAME_LENGTH)


def _member_href(member_id: str) -> str:
    return f"members/{quote(member_id)}.html"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown timezone {name!r}") from error


@functools.cache
def _form_words(lang: str) -> dict[str, str]:
    with (render.templates_dir() / "pages" / "text.toml").open("rb") as f:
        words: dict[str, str] = tomllib.load(f)[lang]["subscribe"]
    return words


@functools.cache
def _stylesheet() -> bytes:
    return (render.templates_dir() / "portal" / STYLESHEET).read_bytes()
