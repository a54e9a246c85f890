"""tokens: the key file, derived tokens (wire format pinned), hashes, shape checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator import tokens
from aggregator.errors import StoreError
from aggregator.tokens import (
    KEY_BYTES,
    KEY_FILE,
    confirm_token,
    load_or_create_key,
    looks_like_token,
    token_hash,
    unsubscribe_token,
)

KEY = bytes(range(32))
ISSUED = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _expected(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


# --- the key file ---------------------------------------------------------------


def test_key_is_created_with_mode_0600(tmp_path):
    key = load_or_create_key(tmp_path)
    path = tmp_path / KEY_FILE
    assert len(key) == KEY_BYTES
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temp file left


def test_key_mode_ignores_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_second_call_loads_the_same_key_without_rewriting_it(tmp_path):
    first = load_or_create_key(tmp_path)
    before = (tmp_path / KEY_FILE).stat()
    assert load_or_create_key(tmp_path) == first
    after = (tmp_path / KEY_FILE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_keys_are_random(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")


def test_an_existing_key_is_used_as_it_is(tmp_path):
    (tmp_path / KEY_FILE).write_bytes(KEY)
    assert load_or_create_key(tmp_path) == KEY


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_key_file_of_the_wrong_size_is_an_error_and_kept(tmp_path, size):
    path = tmp_path / KEY_FILE
    path.write_bytes(b"k" * size)
    with pytest.raises(StoreError) as caught:
        load_or_create_key(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert f"holds {size} bytes, not 32" in message
    assert path.read_bytes() == b"k" * size  # never silently replaced


def test_an_unreadable_key_is_an_error(tmp_path):
    (tmp_path / KEY_FILE).mkdir()  # unreadable as a file, even by root
    with pytest.raises(StoreError, match="cannot read the token key"):
        load_or_create_key(tmp_path)


def test_creating_never_replaces_a_key_another_process_wrote_first(tmp_path):
    # the race load_or_create_key loses when two processes start on a fresh data
    # directory: the key that won (and may be in mailed links) stays
    path = tmp_path / KEY_FILE
    path.write_bytes(KEY)
    tokens._create_key(path)
    assert path.read_bytes() == KEY
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]


def test_a_missing_data_directory_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="cannot create the token key"):
        load_or_create_key(tmp_path / "missing")


# --- tokens ---------------------------------------------------------------------


def test_unsubscribe_token_wire_format_is_pinned():
    # changing this message breaks every unsubscribe link already mailed
    assert unsubscribe_token(KEY, 7, 2) == _expected(KEY, b"unsubscribe\x007\x002")


def test_confirm_token_wire_format_is_pinned():
    message = b"confirm\x007\x00%d" % int(ISSUED.timestamp())
    assert confirm_token(KEY, 7, ISSUED) == _expected(KEY, message)


def test_tokens_are_deterministic():
    assert unsubscribe_token(KEY, 1, 0) == unsubscribe_token(bytes(KEY), 1, 0)
    assert confirm_token(KEY, 1, ISSUED) == confirm_token(KEY, 1, ISSUED)


def test_tokens_differ_per_subscriber_generation_key_and_purpose():
    tokens = {
        unsubscribe_token(KEY, 1, 0),
        unsubscribe_token(KEY, 2, 0),
        unsubscribe_token(KEY, 1, 1),
        unsubscribe_token(bytes(32), 1, 0),
        confirm_token(KEY, 1, ISSUED),
        confirm_token(KEY, 2, ISSUED),
        confirm_token(KEY, 1, ISSUED + timedelta(seconds=1)),
    }
    assert len(tokens) == 7


def test_purposes_are_separated_even_for_equal_numbers():
    seconds = int(ISSUED.timestamp())
    assert unsubscribe_token(KEY, 1, seconds) != confirm_token(KEY, 1, ISSUED)


def test_confirm_token_survives_a_round_trip_through_stored_text():
    precise = ISSUED + timedelta(microseconds=654_321)
    stored = datetime.fromisoformat(precise.isoformat(timespec="seconds"))
    assert confirm_token(KEY, 3, precise) == confirm_token(KEY, 3, stored)
    tokyo = precise.astimezone(timezone(timedelta(hours=9)))
    assert confirm_token(KEY, 3, tokyo) == confirm_token(KEY, 3, precise)


def test_confirm_token_refuses_a_naive_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        confirm_token(KEY, 1, datetime(2026, 12, 1))  # noqa: DTZ001


def test_token_hash_is_sha256_hex_and_reveals_no_token():
    token = unsubscribe_token(KEY, 1, 0)
    digest = token_hash(token)
    assert digest == hashlib.sha256(token.encode("ascii")).hexdigest()
    assert len(digest) == 64
    assert token not in digest
    assert token_hash(unsubscribe_token(KEY, 2, 0)) != digest


# --- looks_like_token -----------------------------------------------------------


def test_generated_tokens_look_like_tokens():
    assert looks_like_token(unsubscribe_token(KEY, 1, 0))
    assert looks_like_token(confirm_token(KEY, 1, ISSUED))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A" * 42,
        "A" * 44,
        "A" * 42 + "B",  # a last letter whose low bits are not zero: not 32 bytes
        "A" * 42 + "=",
        "A" * 41 + "+A",  # standard, not URL-safe, base64
        "A" * 41 + "/A",
        "A" * 43 + "\n",
        "A" * 42 + "Ａ",  # full-width
        "A" * 42 + "a",
        "../" + "A" * 40,
    ],
)
def test_malformed_tokens_are_recognised(text):
    assert not looks_like_token(text)


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**63),
    st.integers(0, 2**31),
)
def test_every_token_has_the_shape_and_decodes_to_32_bytes(key, subscriber_id, gen):
    token = unsubscribe_token(key, subscriber_id, gen)
    assert looks_like_token(token)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32


@given(st.binary(min_size=32, max_size=32))
def test_shape_check_accepts_exactly_canonical_32_byte_encodings(raw):
    encoded = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    assert looks_like_token(encoded)
    assert not looks_like_token(encoded[:-1])
    assert not looks_like_token(encoded + "A")


def test_keys_in_the_data_directory_work_end_to_end(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    token = unsubscribe_token(key, 42, 0)
    assert looks_like_token(token)
    assert unsubscribe_token(load_or_create_key(tmp_path), 42, 0) == token
