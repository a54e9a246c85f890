"""sanitize: the nh3 allow-list, URL resolution and scheme filtering, plain text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.fields import strip_controls
from aggregator.sanitize import clean_html, to_text

BASE = "https://example.com/blog/feed.xml"


def _hrefs(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', html)


def test_allowed_markup_survives() -> None:
    html = (
        "<h2>見出し</h2><p>本文<strong>強調</strong><em>e</em><b>b</b><i>i</i>"
        "<code>x</code></p><ul><li>1</li></ul><ol><li>2</li></ol>"
        "<blockquote>q</blockquote><pre>p</pre><figure><figcaption>c</figcaption>"
        "</figure><table><thead><tr><th>h</th></tr></thead><tbody><tr><td>d</td>"
        "</tr></tbody></table><span>s</span><br>"
    )
    assert clean_html(html, BASE) == html


def test_disallowed_attributes_are_removed() -> None:
    html = (
        '<p name="a" id="b" class="c" style="color:red" onclick="x()">t</p>'
        '<img src="https://example.com/i.png" alt="代替" width="800" height="600" '
        'onerror="x()" class="c">'
    )
    assert clean_html(html, BASE) == (
        '<p>t</p><img src="https://example.com/i.png" alt="代替" width="800" '
        'height="600">'
    )


def test_links_get_noopener_and_lose_foreign_attributes() -> None:
    html = '<a href="https://x.example/" title="t" target="_blank" rel="opener">x</a>'
    assert clean_html(html, BASE) == (
        '<a href="https://x.example/" title="t" rel="noopener noreferrer">x</a>'
    )


def test_dangerous_elements_are_removed_with_their_content() -> None:
    html = (
        "<p>ok</p><script>alert(1)</script><style>p{}</style>"
        '<iframe src="https://evil.example/">f</iframe><noscript>n</noscript>'
    )
    assert clean_html(html, BASE) == "<p>ok</p>"


def test_unknown_tags_keep_their_text() -> None:
    assert clean_html("<h1>T</h1><div><font>x</font></div>", BASE) == "Tx"


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ('<a href="post/1">', "https://example.com/blog/post/1"),
        ('<a href="/about">', "https://example.com/about"),
        ('<a href="//cdn.example/a">', "https://cdn.example/a"),
        ('<a href="#top">', "https://example.com/blog/feed.xml#top"),
        ('<img src="../img/a.png">', "https://example.com/img/a.png"),
        ('<a href="mailto:info@example.com">', "mailto:info@example.com"),
        ('<a href="  https://other.example/x  ">', "https://other.example/x"),
    ],
)
def test_relative_urls_are_resolved_against_base(markup: str, expected: str) -> None:
    assert _hrefs(clean_html(markup + "x", BASE)) == [expected]


def test_relative_urls_without_base_are_dropped() -> None:
    cleaned = clean_html('<a href="/x">a</a><img src="i.png">', None)
    assert _hrefs(cleaned) == []
    assert ">a</a>" in cleaned


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "java\x00script:alert(1)",
        "\x01javascript:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;avascript:alert(1)",
        "&#0000106;avascript:alert(1)",
        "javascript&colon;alert(1)",
        "java&#x09;script:alert(1)",
        "java&Tab;script:alert(1)",
        "vbscript:msgbox(1)",
        "VBScript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "DATA:image/png;base64,AAAA",
        "  data:image/svg+xml,<svg/onload=alert(1)>",
        "file:///etc/passwd",
        "ftp://example.com/",
    ],
)
@pytest.mark.parametrize("base", [BASE, None])
def test_only_http_https_mailto_survive(url: str, base: str | None) -> None:
    for markup in (f'<a href="{url}">x</a>', f'<img src="{url}">'):
        cleaned = clean_html(markup, base)
        assert _hrefs(cleaned) == []
        assert "script" not in cleaned.lower()
        assert "data:" not in cleaned.lower()


def test_image_urls_must_be_http() -> None:
    assert _hrefs(clean_html('<img src="mailto:a@example.com">', BASE)) == []
    assert _hrefs(clean_html('<img src="http://a.example/i">', BASE)) == [
        "http://a.example/i"
    ]


def test_image_dimensions_must_be_numbers() -> None:
    cleaned = clean_html(
        '<img src="https://a.example/i" width="50%" height="1;x">', BASE
    )
    assert cleaned == '<img src="https://a.example/i" width="50%">'


def test_controls_are_stripped_raw_and_encoded() -> None:
    assert clean_html("<p>a\x00b\x07c&#1;d&#x1f;e\ufffff</p>", BASE) == "<p>abcdef</p>"
    assert clean_html('<a title="t\x01&#2;" href="https://a.example/">x</a>', BASE) == (
        '<a title="t" href="https://a.example/" rel="noopener noreferrer">x</a>'
    )


def test_comments_are_removed() -> None:
    assert clean_html("<p>a<!-- secret --></p>", BASE) == "<p>a</p>"


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<b>太字</b>のタイトル", "太字のタイトル"),
        ("A &amp; B &lt;C&gt; &quot;D&quot; &#x263A;", 'A & B <C> "D" ☺'),
        ("<p>one</p><p>two</p>three<br>four", "one two three four"),
        ("  spaced \n\t out  ", "spaced out"),
        ("a&nbsp;&nbsp;b", "a b"),
        ("横須賀市\u3000AI活用", "横須賀市\u3000AI活用"),
        ("x<script>alert(1)</script>y<style>p{}</style>", "xy"),
        ("ctrl\x00\x1b&#1;s", "ctrls"),
        ("plain AT&T", "plain AT&T"),
        ("", ""),
    ],
)
def test_to_text(markup: str, expected: str) -> None:
    assert to_text(markup) == expected


def test_strip_controls_keeps_tab_and_newline_only() -> None:
    text = "a\tb\nc\rd\x00e\x1ff\x7fg\x85h\x9fi\ufffej\uffffk\ud800l\udfffm"
    assert strip_controls(text) == "a\tb\ncdefghijklm"
    japanese = "日本語 ok ①髙﨑\uff5e"  # CP932-only characters are text, not controls
    assert strip_controls(japanese) == japanese


@given(st.text())
def test_strip_controls_leaves_no_controls(text: str) -> None:
    stripped = strip_controls(text)
    assert not any(
        (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in stripped
    )
    assert strip_controls(stripped) == stripped


@given(st.text(alphabet=st.sampled_from("<>\"'=/ aAhrefsciptjv:&#;x0\t\x00")))
def test_clean_html_never_emits_a_script_url(markup: str) -> None:
    for tag in (f"<a href={markup}>x</a>", f'<a href="{markup}">x</a>', markup):
        cleaned = clean_html(tag, BASE)
        assert all(
            u.startswith(("https://", "http://", "mailto:")) for u in _hrefs(cleaned)
        )


@given(st.text().filter(lambda s: "<" not in s and "&" not in s))
def test_to_text_fast_path_agrees_with_the_markup_path(text: str) -> None:
    # plain text skips nh3; an empty inline element forces the full path
    assert to_text(text) == to_text(text + "<b></b>")
