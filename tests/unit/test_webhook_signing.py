"""Standard Webhooks signatures and headers, checked with the official library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from aggregator.clock import SystemClock
from notifiers.webhook import request_headers, signature_header

# The published test vector (standard-webhooks/standard-webhooks, libraries'
# test suites): the secret is used in its whsec_ form.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIME = datetime.fromtimestamp(1614265330, UTC)
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OLD_SECRET = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ="
NEW_SECRET = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="
BODY = '{"type":"ping","data":{"message":"回覧"}}'.encode()
UA = "Kairan/0.1 (+https://kairan.example/)"


def now() -> datetime:
    # The library checks webhook-timestamp against the real clock (±5 minutes).
    return SystemClock().now()


def test_the_published_test_vector_is_reproduced() -> None:
    header = signature_header(VECTOR_ID, VECTOR_TIME, VECTOR_BODY, [VECTOR_SECRET])
    assert header == VECTOR_SIGNATURE


def test_the_header_timestamp_is_signed_to_the_second() -> None:
    late = VECTOR_TIME + timedelta(microseconds=999_999)
    headers = request_headers(VECTOR_ID, late, VECTOR_BODY, [VECTOR_SECRET], UA)
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-signature"] == VECTOR_SIGNATURE


def test_header_names_and_values() -> None:
    sent_at = now()
    headers = request_headers("dlv_42", sent_at, BODY, [NEW_SECRET], UA)
    assert set(headers) == {
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    }
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "dlv_42"
    assert headers["webhook-timestamp"].isdigit()
    assert int(headers["webhook-timestamp"]) == int(sent_at.timestamp())
    assert headers["user-agent"] == UA


def test_two_live_secrets_give_two_signatures_each_verifying() -> None:
    headers = request_headers("dlv_7", now(), BODY, [OLD_SECRET, NEW_SECRET], UA)
    old, new = headers["webhook-signature"].split(" ")
    assert old.startswith("v1,")
    assert new.startswith("v1,")
    assert old != new
    for secret, own in ((OLD_SECRET, old), (NEW_SECRET, new)):
        assert Webhook(secret).verify(BODY, headers) == {
            "type": "ping",
            "data": {"message": "回覧"},
        }
        alone = {**headers, "webhook-signature": own}
        assert Webhook(secret).verify(BODY, alone, json_parse=False) is None


def test_order_of_signatures_follows_the_secrets() -> None:
    sent_at = now()
    both = signature_header("dlv_7", sent_at, BODY, [OLD_SECRET, NEW_SECRET])
    old = signature_header("dlv_7", sent_at, BODY, [OLD_SECRET])
    new = signature_header("dlv_7", sent_at, BODY, [NEW_SECRET])
    assert both == f"{old} {new}"


def test_a_retry_keeps_id_and_body_with_a_fresh_timestamp_and_signature() -> None:
    first_at = now()
    first = request_headers("dlv_9", first_at, BODY, [NEW_SECRET], UA)
    retry = request_headers(
        "dlv_9", first_at + timedelta(seconds=5), BODY, [NEW_SECRET], UA
    )
    assert retry["webhook-id"] == first["webhook-id"]
    assert int(retry["webhook-timestamp"]) == int(first["webhook-timestamp"]) + 5
    assert retry["webhook-signature"] != first["webhook-signature"]
    Webhook(NEW_SECRET).verify(BODY, retry)


@pytest.mark.parametrize(
    ("secret", "body", "message_id"),
    [
        (OLD_SECRET, BODY, "dlv_1"),  # a secret the sender did not use
        (NEW_SECRET, BODY + b" ", "dlv_1"),  # a body changed after signing
        (NEW_SECRET, BODY, "dlv_2"),  # the signature of another delivery
    ],
)
def test_tampering_fails_verification(
    secret: str, body: bytes, message_id: str
) -> None:
    headers = request_headers("dlv_1", now(), BODY, [NEW_SECRET], UA)
    headers["webhook-id"] = message_id
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_no_secret_or_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        signature_header("dlv_1", now(), BODY, [])
    with pytest.raises(ValueError, match="timezone-aware"):
        signature_header("dlv_1", datetime(2026, 1, 1), BODY, [NEW_SECRET])  # noqa: DTZ001
