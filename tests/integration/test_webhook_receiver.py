"""The sandbox webhook receiver over real HTTP: verification, scripts, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from aggregator.clock import SystemClock
from aggregator.sandbox.webhook_receiver import MAX_BODY, WebhookReceiver

pytestmark = pytest.mark.integration

BODY = json.dumps({"type": "article.created", "data": {"title": "春の祭り"}}).encode()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET = new_secret()


def signed(
    msg_id: str, body: bytes = BODY, *, keys: tuple[str, ...] = (SECRET,)
) -> dict[str, str]:
    """Standard Webhooks headers, one signature per key (as during a rotation)."""
    now = SystemClock().now()
    signatures = " ".join(Webhook(k).sign(msg_id, now, body) for k in keys)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def post(
    client: httpx.Client,
    url: str,
    msg_id: str,
    body: bytes = BODY,
    *,
    keys: tuple[str, ...] = (SECRET,),
    timeout: float = 5.0,
) -> httpx.Response:
    headers = signed(msg_id, body, keys=keys)
    return client.post(url, content=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as shared:
        yield shared


@pytest.fixture(scope="module")
def running() -> Iterator[WebhookReceiver]:
    """One receiver for the module (a stop takes uvicorn ~0.2 s); see `receiver`."""
    with WebhookReceiver(secrets=[SECRET]) as shared:
        yield shared


@pytest.fixture
def receiver(running: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """The module's receiver with no script, no request and only SECRET."""
    running.reset()
    running.secrets[:] = [SECRET]
    try:
        yield running
    finally:
        running.reset()


def test_verified_request_is_answered_200_and_recorded(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    response = post(client, receiver.url + "hooks/kairan?x=1", "msg_1")
    assert response.status_code == 200
    [request] = receiver.requests
    assert request.path == "/hooks/kairan?x=1"
    assert request.body == BODY
    assert request.webhook_id == "msg_1"
    assert request.headers["content-type"] == "application/json"
    assert (request.verified, request.status, request.error) == (True, 200, None)
    assert receiver.accepted == [request]
    assert receiver.accepted_ids() == ["msg_1"]


def test_wrong_secret_is_401_and_recorded_unverified(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    response = post(client, receiver.url, "msg_2", keys=(new_secret(),))
    assert response.status_code == 401
    [request] = receiver.requests
    assert (request.verified, request.status) == (False, 401)
    assert request.error == "No matching signature found"
    assert receiver.accepted == []


def test_missing_signature_headers_are_401(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    assert client.post(receiver.url, content=BODY).status_code == 401
    [request] = receiver.requests
    assert (request.error, request.webhook_id) == ("Missing required headers", None)


def test_rotation_any_secret_and_any_signature_verifies(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    old, new = new_secret(), new_secret()
    receiver.secrets[:] = [new_secret(), old]
    # The second of the receiver's secrets verifies.
    assert post(client, receiver.url, "a", keys=(old,)).status_code == 200
    # A signature by a secret the receiver lacks is refused …
    assert post(client, receiver.url, "b", keys=(new,)).status_code == 401
    # … until it learns the secret, while running.
    receiver.secrets.append(new)
    assert post(client, receiver.url, "b", keys=(new,)).status_code == 200
    # During the overlap the sender signs with both; the new one alone verifies.
    receiver.secrets[:] = [new]
    assert post(client, receiver.url, "c", keys=(old, new)).status_code == 200
    assert receiver.accepted_ids() == ["a", "b", "c"]


def test_no_secret_means_nothing_verifies(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.secrets.clear()
    assert post(client, receiver.url, "msg").status_code == 401
    assert receiver.requests[0].error == "no secret configured"


def test_fail_next_then_200_gives_one_accepted_delivery(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(500, body=b"down")
    first = post(client, receiver.url, "msg_r")
    second = post(client, receiver.url, "msg_r")
    assert (first.status_code, first.content) == (500, b"down")
    assert second.status_code == 200
    assert [(r.verified, r.status) for r in receiver.requests] == [
        (True, 500),
        (True, 200),
    ]
    assert receiver.accepted_ids() == ["msg_r"]


def test_scripts_are_taken_in_order_one_per_request(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(503, count=2)
    receiver.redirect_next("http://127.0.0.1:9/")
    receiver.fail_next(410)
    statuses = [post(client, receiver.url, f"m{i}").status_code for i in range(5)]
    assert statuses == [503, 503, 302, 410, 200]


def test_scripted_failure_keeps_the_verification_result(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(500)
    response = post(client, receiver.url, "bad", keys=(new_secret(),))
    assert response.status_code == 500
    [request] = receiver.requests
    assert (request.verified, request.status) == (False, 500)
    assert request.error == "No matching signature found"


def test_retry_after_is_sent_with_the_scripted_status(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(429, retry_after="120")
    response = post(client, receiver.url, "msg_429")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "120"
    assert receiver.accepted == []


def test_redirect_next_answers_302_with_location(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.redirect_next("http://127.0.0.1:9/elsewhere")
    response = post(client, receiver.url, "msg_302")  # httpx does not follow
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert receiver.requests[0].status == 302
    assert receiver.accepted == []


def test_huge_body_is_streamed(client: httpx.Client, receiver: WebhookReceiver) -> None:
    size = 10_000_000
    receiver.huge_body_next(size)
    headers = signed("msg_big")
    read = 0
    with client.stream("POST", receiver.url, content=BODY, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_bytes():
            read += len(chunk)
            if read >= 64 * 1024:
                break  # a careful sender reads at most 64 KiB, then hangs up
    assert 64 * 1024 <= read < size
    assert receiver.accepted_ids() == ["msg_big"]
    # The receiver goes on answering after the sender hung up mid-body.
    assert post(client, receiver.url, "after").status_code == 200


def test_huge_body_can_be_read_whole(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.huge_body_next(1_000_001)
    response = post(client, receiver.url, "msg_whole")
    assert len(response.content) == 1_000_001
    assert set(response.content) == {0}


def test_delay_next_answers_late(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.delay_next(0.5)
    with pytest.raises(httpx.ReadTimeout):
        post(client, receiver.url, "msg_slow", timeout=0.1)
    assert post(client, receiver.url, "msg_fast").status_code == 200
    # The slow one is recorded once answered, though nobody listened any more.
    accepted = receiver.wait_for_sync(2, timeout=5)
    assert [r.webhook_id for r in accepted] == ["msg_fast", "msg_slow"]


async def test_hold_records_at_once_and_answers_on_release(
    receiver: WebhookReceiver,
) -> None:
    receiver.hold()
    async with httpx.AsyncClient() as client:
        sending = asyncio.create_task(
            client.post(receiver.url, content=BODY, headers=signed("msg_held"))
        )
        [request] = await receiver.wait_for(1, timeout=5)
        assert request.webhook_id == "msg_held"
        await asyncio.sleep(0.1)
        assert not sending.done()  # recorded, but the sender does not know yet
        receiver.release()
        response = await asyncio.wait_for(sending, timeout=5)
    assert response.status_code == 200


async def test_wait_for_times_out_saying_what_arrived(
    receiver: WebhookReceiver,
) -> None:
    with pytest.raises(TimeoutError, match="accepted 0 of 1"):
        await receiver.wait_for(1, timeout=0.05)
    with pytest.raises(TimeoutError, match="accepted 0 of 1"):
        receiver.wait_for_sync(1, timeout=0.05)


def test_other_methods_are_405(client: httpx.Client, receiver: WebhookReceiver) -> None:
    receiver.fail_next(500)
    response = client.get(receiver.url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert [(r.status, r.verified) for r in receiver.requests] == [(405, False)]
    # A refusal takes no script: the next POST gets the 500.
    assert post(client, receiver.url, "next").status_code == 500


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_bodies_over_1_mib_are_413(
    client: httpx.Client, receiver: WebhookReceiver, chunked: bool
) -> None:
    big = b"x" * (MAX_BODY + 1)
    # A generator body has no Content-Length: httpx sends it chunked.
    content = iter([big[:MAX_BODY], big[MAX_BODY:]]) if chunked else big
    headers = signed("msg_413", big)
    response = client.post(receiver.url, content=content, headers=headers)
    assert response.status_code == 413
    [request] = receiver.requests
    assert (request.status, request.body) == (413, b"")
    # A body of exactly 1 MiB is read and verified.
    assert post(client, receiver.url, "msg_1mib", b"x" * MAX_BODY).status_code == 200


def test_json_dir_holds_one_pretty_file_per_id(
    client: httpx.Client, tmp_path: Path
) -> None:
    out = tmp_path / "hooks"
    with WebhookReceiver(secrets=[SECRET], json_dir=out) as receiver:
        post(client, receiver.url, "msg_a")
        post(client, receiver.url, "msg_b", b'{"n": 1}')
        receiver.fail_next(500)
        post(client, receiver.url, "msg_c")  # not accepted: no file
        again = json.dumps({"type": "article.created", "again": True}).encode()
        post(client, receiver.url, "msg_b", again)  # a redelivery overwrites
        post(client, receiver.url, "../escape")  # not a file name: hashed
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3
    assert {"msg_a.json", "msg_b.json"} <= set(files)
    text = (out / "msg_a.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(BODY), indent=2, ensure_ascii=False) + "\n"
    assert "春の祭り" in text
    assert json.loads((out / "msg_b.json").read_text(encoding="utf-8")) == {
        "type": "article.created",
        "again": True,
    }


def test_reset_forgets_requests_scripts_and_hold(
    client: httpx.Client, receiver: WebhookReceiver
) -> None:
    post(client, receiver.url, "before")
    receiver.fail_next(500)
    receiver.hold()
    receiver.reset()
    assert receiver.requests == []
    assert post(client, receiver.url, "after").status_code == 200
    assert receiver.accepted_ids() == ["after"]


def test_restart_binds_the_same_port_and_stop_is_idempotent(
    client: httpx.Client,
) -> None:
    threads = threading.active_count()
    receiver = WebhookReceiver(secrets=[SECRET])
    receiver.stop()  # never started: nothing to do
    with receiver:
        port = receiver.port
        assert post(client, receiver.url, "one").status_code == 200
    receiver.stop()
    with pytest.raises(httpx.ConnectError):
        post(client, receiver.url, "down")
    with receiver:
        assert receiver.port == port
        assert post(client, receiver.url, "two").status_code == 200
    assert receiver.accepted_ids() == ["one", "two"]
    assert threading.active_count() == threads  # the thread was joined


def test_stop_answers_a_held_request_promptly() -> None:
    receiver = WebhookReceiver(secrets=[SECRET]).start()
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client() as own:
            responses.append(post(own, receiver.url, "held"))

    sender = threading.Thread(target=send)
    clock = SystemClock()
    try:
        receiver.hold()
        sender.start()
        receiver.wait_for_sync(1, timeout=5)
        began = clock.monotonic()
    finally:
        receiver.stop()
    assert clock.monotonic() - began < 2
    sender.join(timeout=5)
    assert [r.status_code for r in responses] == [200]
