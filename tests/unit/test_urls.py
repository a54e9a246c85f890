"""urls: canonical form, note keys, hosts and resolution, by example and by property."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator import urls

KEY = "n0123456789ab"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://Example.COM/Path", "https://example.com/Path"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:/a", "http://example.com/a"),
        ("http://example.com:0080/a", "http://example.com/a"),
        ("http://example.com/a#section-2", "http://example.com/a"),
        ("http://example.com/a?b=1&utm_source=x&c=2", "http://example.com/a?b=1&c=2"),
        ("http://example.com/a?UTM_Medium=x&Utm_campaign=y", "http://example.com/a"),
        ("http://example.com/a?utm%5Fsource=x&k=v", "http://example.com/a?k=v"),
        ("http://example.com/?fbclid=1&gclid=2&yclid=3&q=z", "http://example.com/?q=z"),
        ("http://example.com/?mc_cid=1&mc_eid=2", "http://example.com/"),
        (
            f"https://note.com/u/n/{KEY}?magazine_key=m8f7256e10f43",
            f"https://note.com/u/n/{KEY}",
        ),
        ("https://note.com/u/n/x?from=notice&page=2", "https://note.com/u/n/x?page=2"),
        ("http://example.com/?z=1&a=2&m=3", "http://example.com/?z=1&a=2&m=3"),
        ("http://example.com/?a=1&&b=2", "http://example.com/?a=1&b=2"),
        (
            "http://example.com/%7e%2fx?q=%e3%81%82",
            "http://example.com/%7E%2Fx?q=%E3%81%82",
        ),
        ("http://example.com/100%", "http://example.com/100%"),
        ("http://Bücher.EXAMPLE/x", "http://bücher.example/x"),
        ("http://xn--bcher-kva.EXAMPLE/", "http://xn--bcher-kva.example/"),
        ("http://User:Pass@Example.com:80/", "http://User:Pass@example.com/"),
        ("http://[::1]:80/a", "http://[::1]/a"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ("  http://example.com/a\n", "http://example.com/a"),
        ("http://exa\tmple.com/a\r\nb", "http://example.com/ab"),
    ],
)
def test_canonical_examples(raw: str, expected: str) -> None:
    assert urls.canonical(raw) == expected


@pytest.mark.parametrize(
    "junk",
    ["", "not a url", "http://[::1", "http://", "mailto:Someone@Example.com",
     "javascript:alert(1)", "//example.com/a", "/relative/path", "\x00\x01", "http:///x"],
)  # fmt: skip
def test_canonical_leaves_other_input_trimmed_only(junk: str) -> None:
    assert urls.canonical(junk) == junk.strip("\x00\x01 ")


@pytest.mark.parametrize(
    "url",
    [
        f"https://note.com/kouzoukaikaku/n/{KEY}",
        f"https://note.com/kouzoukaikaku/n/{KEY}/",
        f"https://note.com/kouzoukaikaku/n/{KEY}?magazine_key=m8f7256e10f43",
        f"https://note.mu/kouzoukaikaku/n/{KEY}",
        f"http://note.mu/kouzoukaikaku/n/{KEY}#comments",
        f"https://govgov.ai/n/{KEY}",
        f"https://govgov.ai/n/{KEY}?magazine_key=m8f7256e10f43&utm_source=x",
        f"https://kuwana-city.note.jp/n/{KEY.upper().replace('N', 'n', 1)}",
    ],
)
def test_note_key_on_every_host(url: str) -> None:
    assert urls.note_key(url) == KEY


@pytest.mark.parametrize(
    "url",
    [
        "https://note.com/kouzoukaikaku",
        "https://note.com/kouzoukaikaku/m/m8f7256e10f43",
        "https://note.com/kouzoukaikaku/n/n0123",  # too short
        f"https://note.com/kouzoukaikaku/n/{KEY}0",  # too long
        f"https://note.com/a/b/n/{KEY}",  # too deep
        f"https://note.com/kouzoukaikaku/n/{KEY}/comments",
        f"ftp://note.com/u/n/{KEY}",
        f"/u/n/{KEY}",
        KEY,
        "http://[::1",
    ],
)
def test_note_key_refuses_other_shapes(url: str) -> None:
    assert urls.note_key(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Note.COM:443/x", "note.com"),
        ("http://user@Host.example:8080/", "host.example"),
        ("http://[2001:DB8::1]:80/", "2001:db8::1"),
        ("/relative", ""),
        ("", ""),
        ("http://[::1", ""),
    ],
)
def test_host(url: str, expected: str) -> None:
    assert urls.host(url) == expected


@pytest.mark.parametrize(
    ("base", "url", "expected"),
    [
        (
            "https://example.com/blog/feed.xml",
            "post/1",
            "https://example.com/blog/post/1",
        ),
        (
            "https://example.com/blog/feed.xml",
            "/img/a.png",
            "https://example.com/img/a.png",
        ),
        (
            "https://example.com/blog/",
            "//cdn.example/a.png",
            "https://cdn.example/a.png",
        ),
        ("https://example.com/", "https://other.example/x", "https://other.example/x"),
        (None, " /x ", "/x"),
        ("http://[::1", "/x", "/x"),
    ],
)
def test_resolve(base: str | None, url: str, expected: str) -> None:
    assert urls.resolve(base, url) == expected


def test_is_web() -> None:
    assert urls.is_web("https://example.com/")
    assert not urls.is_web("mailto:a@example.com")
    assert not urls.is_web("/x")
    assert not urls.is_web("http://[::1")


# --- properties ----------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_label, min_size=1, max_size=3).map(".".join)
_segment = st.from_regex(
    r"([A-Za-z0-9._~!$'()*+,;=:@-]|%[0-9a-fA-F]{2}){0,8}", fullmatch=True
)
_paths = st.lists(_segment, max_size=4).map(lambda s: "/".join(["", *s]) if s else "")
_param_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda n: not n.startswith("utm_") and n not in {"from", "fbclid", "gclid", "yclid"}
)
_params = st.tuples(
    _param_names, st.from_regex(r"[A-Za-z0-9%._-]{0,6}", fullmatch=True)
)
_queries = st.lists(_params, max_size=4).map(
    lambda ps: "&".join(f"{k}={v}" for k, v in ps)
)
_tracking = st.sampled_from(
    ["utm_source=x", "UTM_Medium=mail", "utm_campaign=", "fbclid=abc", "gclid=1",
     "yclid=2", "mc_cid=3", "mc_eid=4", "magazine_key=m8f7256e10f43", "from=notice"]
)  # fmt: skip


@st.composite
def _urls(draw: st.DrawFn) -> tuple[str, str, str, str, str]:
    scheme = draw(st.sampled_from(["http", "https"]))
    return scheme, draw(_hosts), draw(_paths), draw(_queries), draw(_segment)


def _join(scheme: str, host: str, path: str, params: list[str]) -> str:
    query = "&".join(params)
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def _random_case(text: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if f else c for c, f in zip(text, flips * len(text), strict=False)
    )


@given(st.text())
def test_canonical_never_raises_and_is_idempotent_on_any_text(text: str) -> None:
    once = urls.canonical(text)
    assert urls.canonical(once) == once


@given(st.text(alphabet=st.sampled_from("hts:/[]@%?#&=.:aA1 \t\x00é")))
def test_canonical_is_idempotent_on_url_like_text(text: str) -> None:
    once = urls.canonical(text)
    assert urls.canonical(once) == once


@given(_urls())
def test_canonical_is_idempotent_on_urls(parts: tuple[str, str, str, str, str]) -> None:
    scheme, host, path, query, _ = parts
    once = urls.canonical(_join(scheme, host, path, [query]))
    assert urls.canonical(once) == once
    assert once.startswith(f"{scheme}://{host}/")


@given(
    _urls(),
    st.lists(_tracking, max_size=4),
    st.lists(st.booleans(), min_size=1, max_size=5),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_canonical_ignores_tracking_fragment_case_and_default_port(
    parts: tuple[str, str, str, str, str],
    tracking: list[str],
    flips: list[bool],
    explicit_port: bool,
    rnd: random.Random,
) -> None:
    scheme, host, path, query, fragment = parts
    plain = _join(scheme, host, path, [query] if query else [])
    params = [p for p in query.split("&") if p]
    for param in tracking:
        params.insert(rnd.randint(0, len(params)), param)
    port = {"http": ":80", "https": ":443"}[scheme] if explicit_port else ""
    noisy_host = _random_case(host, flips) + port
    noisy = (
        _join(_random_case(scheme, flips), noisy_host, path, params) + f"#{fragment}"
    )
    assert urls.canonical(noisy) == urls.canonical(plain)


@given(_urls(), st.lists(_tracking, max_size=3))
def test_note_key_ignores_host_and_query(
    parts: tuple[str, str, str, str, str], tracking: list[str]
) -> None:
    scheme, host, _, query, _ = parts
    link = _join(scheme, host, f"/someone/n/{KEY}", [query, *tracking])
    assert urls.note_key(link) == KEY
    assert urls.note_key(link.replace("/someone", "", 1)) == KEY


def test_resolve_keeps_an_absolute_url_as_given() -> None:
    assert urls.resolve("https://a.example/x/", "HTTPS://b.example/c?d#e") == (
        "HTTPS://b.example/c?d#e"
    )
    assert urls.resolve("https://a.example/x/", "../y") == "https://a.example/y"
