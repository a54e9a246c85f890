"""Unguessable, recomputable tokens for one-click unsubscribe and opt-in confirmation.

Tokens are derived, not drawn at random and stored: each is the HMAC-SHA256, under
a secret key kept in the data directory, of a domain-separated message naming the
subscriber. That gives three properties at once:

- every mail to a subscriber carries the same working link, however many are sent
  and whichever process renders them, without keeping the token anywhere;
- a resend after a crash renders byte-identical headers and body (issue 3: the
  message is fixed when it is claimed), because the token is a function of rows
  that do not change;
- the database holds only `token_hash`, so a leaked database (or backup) reveals
  no working link, while an incoming token is still found by its hash.

The unsubscribe message carries a generation number: bumping it (on re-subscribe)
retires every link mailed before. The confirmation message carries its issue
time, which the caller compares with its expiry and stores to make it single-use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from datetime import datetime
from pathlib import Path

from aggregator.errors import StoreError
from aggregator.files import fsync_directory

KEY_FILE = "secret.key"
KEY_BYTES = 32

# 32 HMAC-SHA256 bytes are 43 base64url characters without padding; the last one
# carries only 2 data bits, its 4 low bits zero (RFC 4648 §5), so only 16 of the
# 64 letters can end a token. Anything else was not made by us.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def load_or_create_key(data_dir: Path) -> bytes:
    """The token key in ``data_dir/secret.key``, created (mode 0600) the first time.

    Losing or changing this file breaks every unsubscribe link already mailed, so
    a file of the wrong size is an error, never silently replaced.
    """
    path = data_dir / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        _create_key(path)
    return _read_key(path)


def unsubscribe_token(key: bytes, subscriber_id: int, generation: int) -> str:
    """The token in a subscriber's unsubscribe links (List-Unsubscribe, footer)."""
    return _token(key, b"unsubscribe\0%d\0%d" % (subscriber_id, generation))


def confirm_token(key: bytes, subscriber_id: int, issued_at: datetime) -> str:
    """The token in a double opt-in mail issued at ``issued_at``.

    Whole seconds since the epoch enter the message, so the stored issue time
    recomputes the same token after a round trip through ISO 8601 text.
    """
    if issued_at.utcoffset() is None:
        raise ValueError(f"issued_at must be timezone-aware, got {issued_at!r}")
    return _token(key, b"confirm\0%d\0%d" % (subscriber_id, int(issued_at.timestamp())))


def token_hash(token: str) -> str:
    """What the database stores and looks a token up by: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    """True when ``text`` has a token's exact length and alphabet.

    The HTTP endpoints answer 400 to anything else before touching the database.
    """
    return _TOKEN.fullmatch(text) is not None


def _token(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read the token key {path}") from e
    if len(key) != KEY_BYTES:
        raise StoreError(
            f"token key {path} holds {len(key)} bytes, not {KEY_BYTES}: restore it "
            "from a backup (a new key breaks every unsubscribe link already mailed)"
        )
    return key


def _create_key(path: Path) -> None:
    """Write a new random key atomically, never replacing one that exists.

    The key is written to a temporary file (mode 0600 from mkstemp), fsynced and
    hard-linked into place: unlike os.replace, the link fails when another process
    created the key first, whose key may already be in mailed links; that key is
    then the one read back.
    """
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise StoreError(f"cannot create the token key {path}") from e
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        _link_new(Path(temp), path)
    finally:
        Path(temp).unlink(missing_ok=True)


def _link_new(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)
    except FileExistsError:
        return  # created meanwhile by another process: that one is kept
    except OSError as e:
        raise StoreError(f"cannot create the token key {path}") from e
    fsync_directory(path.parent)
