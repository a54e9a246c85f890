"""The server's published files: types, strong ETags, 304s, gzip, no traversal.

A real uvicorn server on 127.0.0.1 serves a real data/public/ written by
publish.write_artefacts, as `kairan publish` writes it.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aggregator.public_dir import write_artefacts
from aggregator.runtime import open_runtime
from aggregator.server import Server, build_app
from notifiers.published import Artefact
from tests.support.builders import settings
from tests.support.clock import FixedClock

FEED = "<?xml version='1.0' encoding='utf-8'?><feed>" + "<entry/>" * 400 + "</feed>"
PLAIN = {"Accept-Encoding": "identity"}
FILES = (
    Artefact("feed.atom", FEED.encode(), "application/atom+xml"),
    Artefact("feed.json", b'{"version": "https://jsonfeed.org/version/1.1"}', ""),
    Artefact("members.opml", b"<opml version='2.0'/>", ""),
    Artefact("index.html", "<!doctype html><title>回覧板</title>".encode(), ""),
    Artefact("tags/神奈川県.html", "<!doctype html><title>神奈川</title>".encode(), ""),
)


@dataclass
class Public:
    root: Path
    client: httpx.AsyncClient


@pytest.fixture
async def public(tmp_path: Path, clock: FixedClock) -> AsyncIterator[Public]:
    config = settings(tmp_path)
    write_artefacts(config.public_dir, FILES)
    # Beside public/, like data/secret.key: it must never be served.
    (config.data_dir / "secret.txt").write_text("outside public/", encoding="utf-8")
    with open_runtime(config, clock=clock) as rt:
        server = Server(build_app(rt), "127.0.0.1", 0)
        async with (
            server.running(),
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            yield Public(config.public_dir, client)


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/members.opml", "text/x-opml; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/tags/%E7%A5%9E%E5%A5%88%E5%B7%9D%E7%9C%8C.html", "text/html; charset=utf-8"),
    ],
)
async def test_each_file_has_its_type_and_charset(
    public: Public, path: str, media_type: str
) -> None:
    response = await public.client.get(path, headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"].startswith("public, max-age=")


async def test_200_then_304_with_the_etag_or_the_date(public: Public) -> None:
    first = await public.client.get(
        "/feed.atom", headers={"Accept-Encoding": "identity"}
    )
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"')  # strong: no W/
    again = await public.client.get(
        "/feed.atom", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    dated = await public.client.get(
        "/feed.atom",
        headers={"If-Modified-Since": modified, "Accept-Encoding": "identity"},
    )
    assert dated.status_code == 304
    other = await public.client.get(
        "/feed.atom", headers={"If-None-Match": '"nope"', "Accept-Encoding": "identity"}
    )
    assert other.status_code == 200
    assert other.content == FEED.encode()


async def test_a_republished_file_gets_a_new_etag_and_an_unchanged_one_keeps_it(
    public: Public,
) -> None:
    before = await public.client.get("/feed.atom")
    opml_before = await public.client.get("/members.opml")
    changed = Artefact("feed.atom", FEED.replace("entry", "item").encode(), "")
    written, unchanged, removed = write_artefacts(public.root, (changed, *FILES[1:]))
    assert (written, unchanged, removed) == (["feed.atom"], 4, [])
    after = await public.client.get("/feed.atom")
    assert after.headers["etag"] != before.headers["etag"]
    opml_after = await public.client.get("/members.opml")
    assert opml_after.headers["etag"] == opml_before.headers["etag"]
    assert opml_after.headers["last-modified"] == opml_before.headers["last-modified"]


async def test_gzip_when_asked_with_its_own_etag(public: Public) -> None:
    plain = await public.client.get(
        "/feed.atom", headers={"Accept-Encoding": "identity"}
    )
    zipped = await public.client.get("/feed.atom", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == FEED.encode()  # httpx decoded it
    assert zipped.headers["etag"] != plain.headers["etag"]
    raw = await public.client.send(
        public.client.build_request(
            "GET", "/feed.atom", headers={"Accept-Encoding": "gzip"}
        ),
        stream=True,
    )
    compressed = b"".join([chunk async for chunk in raw.aiter_raw()])
    await raw.aclose()
    assert len(compressed) < len(FEED) / 5
    assert gzip.decompress(compressed) == FEED.encode()
    tiny = await public.client.get("/members.opml", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in tiny.headers  # too small to be worth it


async def test_head_has_the_headers_and_no_body(public: Public) -> None:
    response = await public.client.head("/feed.atom")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    "path",
    [
        "/nothing-here.atom",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/tags/..%2f..%2fsecret.txt",
        "/.kairan-published.json",
        "/tags/%2e%2e%5c%2e%2e%5csecret.txt",
        "/../secret.key",
        "/%2e%2e/kairan.sqlite3",
    ],
)
async def test_unknown_paths_and_traversal_are_404(public: Public, path: str) -> None:
    response = await public.client.get(path)
    assert response.status_code == 404
    assert b"outside public/" not in response.content


async def test_a_symlink_out_of_public_is_refused(public: Public) -> None:
    os.symlink(public.root.parent / "secret.txt", public.root / "link.txt")
    response = await public.client.get("/link.txt")
    assert response.status_code == 404


async def test_pages_get_the_portal_policy(public: Public) -> None:
    page = await public.client.get("/index.html")
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' https:" in policy
    assert "script-src" not in policy  # default-src 'none' covers scripts
    feed = await public.client.get("/feed.atom")
    assert feed.headers["x-content-type-options"] == "nosniff"
