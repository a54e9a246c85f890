"""addresses: what a subscriber address may be, and its uniqueness/suppression keys."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.addresses import (
    MAX_LENGTH,
    address_key,
    normalize_email,
    suppression_hash,
)
from aggregator.errors import UsageError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("taro@example.jp", "taro@example.jp"),
        ("Taro.Yamada@EXAMPLE.JP", "Taro.Yamada@example.jp"),  # local case kept
        ("info@例え.jp", "info@xn--r8jz45g.jp"),  # ja IDN domain: mailed as ASCII
        ("info@XN--R8JZ45G.JP", "info@xn--r8jz45g.jp"),  # its Punycode, upper-case
        ("info@ｅｘａｍｐｌｅ.jp", "info@example.jp"),  # full-width domain mapped
        ("  taro@example.jp ", "taro@example.jp"),  # surrounding spaces dropped
        ("a+news@city.kobe.lg.jp", "a+news@city.kobe.lg.jp"),
        ("Postmaster@example.jp", "postmaster@example.jp"),  # RFC 2142 role name
    ],
)
def test_valid_addresses_are_normalised(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("a@b.jp\r\nBcc: x@evil.jp", "line break"),
        ("a@b\r\nBcc: x", "line break"),
        ("a@b.jp\nBcc: x@evil.jp", "line break"),
        ("a@b.jp\r", "line break"),
        ("a@b.jp\x00", "control character U+0000"),
        ("a\tb@example.jp", "control character U+0009"),
        ("a@example.jp\x85", "control character U+0085"),  # NEL, a C1 line break
        ("Name <a@b.jp>", "display name"),
        ("<a@b.jp>", "display name"),
        ("=?utf-8?q?x?= <a@b.jp>", "display name"),
        ("a@b.jp, c@d.jp", "more than one address"),
        ("a@b.jp;c@d.jp", "more than one address"),
        ("a(comment)@b.jp", "comments"),
        ("a@b.jp (Taro)", "comments"),
        ('"a b"@b.jp', "quoted local parts"),
        ('"x@evil.jp"@b.jp', "quoted local parts"),
        ("ｔａｒｏ@example.jp", "full-width"),
        # RFC 6531 local parts need SMTPUTF8, which many servers lack
        ("山田@例え.jp", "internationalized characters before the @-sign"),
        ("x" * 250 + "@b.jp", f"longer than {MAX_LENGTH}"),
        ("taro.example.jp", "@-sign"),
        ("taro@", "after the @-sign"),
        ("taro@localhost", "should have a period"),
        ("taro@[127.0.0.1]", "bracketed ip address"),
        ("a\u202e@example.jp", "right-to-left override"),  # right-to-left override
        ("taro@@example.jp", "invalid characters"),
        ("taro＠example.jp", "full-width"),  # the full-width at-sign
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(raw, problem):
    with pytest.raises(UsageError) as caught:
        normalize_email(raw)
    message = str(caught.value)
    assert problem.lower() in message.lower()
    _assert_one_clean_line(message)
    if raw.strip():
        assert repr(raw[:80])[1:-1] in message  # the value is named, escaped


def _assert_one_clean_line(message: str) -> None:
    assert "\n" not in message
    assert "\r" not in message
    assert message[0].islower()
    assert not message.endswith(".")


def test_over_long_input_is_shown_truncated():
    with pytest.raises(UsageError) as caught:
        normalize_email("x" * 10_000 + "@example.jp")
    assert len(str(caught.value)) < 200


def test_the_longest_valid_address_is_accepted():
    local = "a" * 64  # RFC 5321 §4.5.3.1.1
    domain = ".".join(["b" * 62, "b" * 61, "b" * 61]) + ".jp"  # 189: 254 in all
    address = f"{local}@{domain}"
    assert len(address) == MAX_LENGTH
    assert normalize_email(address) == address


def test_address_key_folds_case_and_width():
    assert address_key("Taro@Example.JP") == "taro@example.jp"
    assert address_key("ｔａｒｏ@example.jp") == "taro@example.jp"


def test_case_and_punycode_variants_share_one_key():
    forms = ["Taro@例え.jp", "taro@XN--R8JZ45G.JP", "TARO@xn--r8jz45g.jp"]
    assert len({address_key(normalize_email(f)) for f in forms}) == 1


def test_suppression_hash_is_sha256_of_the_key():
    expected = hashlib.sha256(b"taro@example.jp").hexdigest()
    assert suppression_hash("Taro@Example.jp") == expected
    assert suppression_hash("taro@example.jp") == expected


def test_suppression_hash_keeps_nothing_of_the_address():
    digest = suppression_hash("taro@example.jp")
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    assert "taro" not in digest
    assert digest != suppression_hash("jiro@example.jp")


_ADDRESSISH = st.text(
    alphabet=st.sampled_from(list("aZ9.+-_@ <>,;()\"'\r\n\t\x00例えｅＡ@")),
    max_size=30,
)


@given(_ADDRESSISH)
def test_any_input_is_refused_cleanly_or_comes_back_safe(raw):
    try:
        address = normalize_email(raw)
    except UsageError as e:
        _assert_one_clean_line(str(e))
        return
    assert not any(c in address for c in '\r\n\t\x00 <>,;()"')
    assert address.count("@") == 1
    assert normalize_email(address) == address
