"""The webhook wire type: stable bytes, UTF-8, nulls, and the shipped JSON Schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from notifiers.webhook_payload import (
    EVENT_ARTICLE_CREATED,
    EVENT_PING,
    WebhookArticle,
    WebhookMember,
    article_body,
    ping_body,
    schema,
)

JST = timezone(timedelta(hours=9))
WHEN = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
MEMBER = WebhookMember(
    id="kuwana", name="桑名市", prefecture="三重県", tags=("市", "東海")
)
ARTICLE = WebhookArticle(
    id="tag:kuwana.example,2026:news/1",
    url="https://kuwana.example/news/1",
    title="冬の防災訓練のお知らせ",
    summary="12月に「防災訓練」を行います。",
    published=datetime(2026, 11, 28, 17, 30, 15, 123456, tzinfo=JST),
    updated=datetime(2026, 11, 28, 8, 45, tzinfo=UTC),
    author="防災課",
    thumbnail="https://kuwana.example/img/1.jpg",
    member=MEMBER,
)
GOLDEN = (
    '{"type":"article.created","timestamp":"2026-11-28T09:00:00Z","data":{'
    '"id":"tag:kuwana.example,2026:news/1","url":"https://kuwana.example/news/1",'
    '"title":"冬の防災訓練のお知らせ","summary":"12月に「防災訓練」を行います。",'
    '"published":"2026-11-28T08:30:15Z","updated":"2026-11-28T08:45:00Z",'
    '"author":"防災課","thumbnail":"https://kuwana.example/img/1.jpg",'
    '"member":{"id":"kuwana","name":"桑名市","prefecture":"三重県",'
    '"tags":["市","東海"]}}}'
)
BARE = replace(
    ARTICLE,
    url=None,
    published=None,
    updated=None,
    author=None,
    thumbnail=None,
    member=replace(MEMBER, prefecture=None, tags=()),
)
VALIDATOR = Draft202012Validator(schema())


def test_article_body_bytes_are_stable() -> None:
    assert article_body(ARTICLE, WHEN) == GOLDEN.encode("utf-8")
    assert article_body(ARTICLE, WHEN) == article_body(ARTICLE, WHEN)


def test_japanese_text_stays_utf8_not_escaped() -> None:
    body = article_body(ARTICLE, WHEN)
    assert "冬の防災訓練".encode() in body
    assert b"\\u" not in body


def test_times_are_utc_with_z_and_whole_seconds() -> None:
    data = json.loads(article_body(ARTICLE, WHEN.astimezone(JST)))
    assert data["timestamp"] == "2026-11-28T09:00:00Z"
    assert data["data"]["published"] == "2026-11-28T08:30:15Z"  # 17:30:15.123456+09


def test_missing_values_are_null_and_every_key_is_present() -> None:
    data = json.loads(article_body(BARE, WHEN))["data"]
    assert data["url"] is None
    assert data["published"] is None
    assert data["updated"] is None
    assert data["author"] is None
    assert data["thumbnail"] is None
    assert data["member"] == {
        "id": "kuwana",
        "name": "桑名市",
        "prefecture": None,
        "tags": [],
    }


def test_controls_and_lone_surrogates_are_dropped() -> None:
    dirty = replace(ARTICLE, title="防災\x00訓練\ud800\x1b", summary="a\u0085b")
    data = json.loads(article_body(dirty, WHEN))["data"]
    assert data["title"] == "防災訓練"
    assert data["summary"] == "ab"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        article_body(ARTICLE, datetime(2026, 11, 28, 9, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive"):
        article_body(replace(ARTICLE, updated=datetime(2026, 1, 1)), WHEN)  # noqa: DTZ001


def test_ping_body() -> None:
    assert ping_body(WHEN) == (
        b'{"type":"ping","timestamp":"2026-11-28T09:00:00Z",'
        b'"data":{"message":"Kairan webhook test"}}'
    )


def test_the_schema_is_a_valid_2020_12_schema_that_explains_versioning() -> None:
    shipped = schema()
    Draft202012Validator.check_schema(shipped)
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert shipped["$id"].endswith(":v1")
    assert "new optional fields may be added" in shipped["description"]


@pytest.mark.parametrize(
    "body",
    [article_body(ARTICLE, WHEN), article_body(BARE, WHEN), ping_body(WHEN)],
    ids=["article", "article-with-nulls", "ping"],
)
def test_every_body_validates(body: bytes) -> None:
    VALIDATOR.validate(json.loads(body))


def with_change(body: bytes, change: dict[str, Any], *path: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(body)
    target = document
    for key in path:
        target = target[key]
    target.update(change)
    return document


@pytest.mark.parametrize(
    ("body", "change", "path"),
    [
        (article_body(ARTICLE, WHEN), {"extra": 1}, ("data",)),
        (article_body(ARTICLE, WHEN), {"site": "x"}, ("data", "member")),
        (article_body(ARTICLE, WHEN), {"published": "2026-11-28"}, ("data",)),
        (article_body(ARTICLE, WHEN), {"type": "article.updated"}, ()),
        (article_body(ARTICLE, WHEN), {"type": EVENT_PING}, ()),
        (ping_body(WHEN), {"type": EVENT_ARTICLE_CREATED}, ()),
        (ping_body(WHEN), {"extra": True}, ("data",)),
    ],
    ids=[
        "extra-data-field",
        "extra-member-field",
        "date-without-time",
        "unknown-type",
        "article-data-as-ping",
        "ping-data-as-article",
        "extra-ping-field",
    ],
)
def test_bodies_outside_the_schema_fail(
    body: bytes, change: dict[str, Any], path: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError):
        VALIDATOR.validate(with_change(body, change, *path))


def test_a_missing_data_key_fails() -> None:
    document = json.loads(article_body(ARTICLE, WHEN))
    del document["data"]["thumbnail"]
    with pytest.raises(ValidationError):
        VALIDATOR.validate(document)
