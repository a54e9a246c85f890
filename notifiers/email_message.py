"""Pure: build the MIME message (multipart/alternative, Message-ID, List-Unsubscribe).

The header block is written here rather than by the email package: Python 3.11.7's
folder does not quote newlines (CVE-2024-6923), and its header parser decodes
encoded-words found in the *input*, so a feed title holding "=?utf-8?b?...?=" could
become a line break. Every value below is either one of our own validated tokens or
sanitised text that is RFC 2047-encoded whenever it is not plain ASCII words; the
serialised block is then checked line by line (`check_headers`).

Bodies are base64 (RFC 2045 §6.8): Japanese UTF-8 costs 1.33× in base64 against ~3× in
quoted-printable, lines are 76 characters whatever the text, and a boundary made of
"=" and "_" can never occur in base64 lines. The boundary is derived from the
Message-ID, so a resend after a crash is byte for byte the same message.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
from collections.abc import Iterable, Sequence

from notifiers.mail import MailKind, MailRequest, RenderedMail, Sender

SUBJECT_LENGTH = 150  # characters; longer subjects are cut with "…"

# Line breaks of any kind (C0 CR/LF/VT/FF/FS-US, NEL, Unicode line and paragraph
# separators) and tab become a space; other controls, bidi embeddings, overrides and
# isolates (which can make a subject read backwards), noncharacters and lone
# surrogates are dropped.
_BREAKS = re.compile("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff"
    "\ud800-\udfff]"
)
# Collapsed to one space; U+3000 (ideographic space) is Japanese punctuation, kept.
_WHITESPACE = re.compile(r"[^\S\u3000]+")

_LINE = 78  # RFC 5322 §2.1.1: SHOULD; 998 is the MUST that check_headers enforces
_WORD_LENGTH = 75  # RFC 2047 §2: an encoded-word is at most 75 characters
_WORD_BYTES = 45  # per word on a continuation line: " " + 72 characters
# Unstructured text (Subject) may hold any printable ASCII; a phrase (display name)
# only atoms, else it would need quoting (RFC 5322 §3.2.5).
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_PLAIN_PHRASE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)
# A bare addr-spec (RFC 5322 §3.4.1 dot-atom, ASCII: we do not offer SMTPUTF8).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_ADDRESS = re.compile(rf"{_ATOM}@{_ATOM}")
_MESSAGE_ID = re.compile(rf"<{_ATOM}@{_ATOM}>")  # RFC 5322 §3.6.4
_LIST_ID = re.compile(rf"\s*(?:(.*\S)\s+)?<({_ATOM})>\s*", re.DOTALL)  # RFC 2919 §2
_URI = re.compile(r"[!#-;=?-~]+")  # printable ASCII without space, '"', '<', '>'
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")  # RFC 5646, loosely

_BASE64_LINE = 76  # RFC 2045 §6.8: at most 76 characters a line
_PART_HEAD = (
    "Content-Type: text/{subtype}; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
)


def sanitize_header_text(text: str, limit: int = SUBJECT_LENGTH) -> str:
    """`text` as one line: breaks → space, controls dropped, space collapsed, capped."""
    line = _WHITESPACE.sub(" ", _INVISIBLE.sub("", _BREAKS.sub(" ", text))).strip()
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"


def display_name(sender: Sender) -> str:
    """Who the mail is from (特定電子メール法: 送信者の氏名又は名称)."""
    return sender.sender_name or sender.site_title


def build(request: MailRequest, rendered: RenderedMail) -> bytes:
    """The exact bytes to hand to SMTP: CRLF line endings, headers checked.

    Raises ValueError for an address, id or URL that is not a plain header token, and
    when the serialised header block holds a line that none of our headers made.
    """
    headers = _headers(request, rendered)
    boundary = (
        "=_kairan_" + hashlib.sha256(request.message_id.encode()).hexdigest()[:32]
    )
    content_type = ["multipart/alternative;", f'boundary="{boundary}"']
    headers.append(("Content-Type", _fold("Content-Type", content_type)))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    message = b"".join(
        (
            head.encode("ascii"),
            b"\r\n",
            _part(boundary, "plain", rendered.text),
            _part(boundary, "html", rendered.html),
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
    check_headers(message, [name for name, _ in headers])
    return message


def check_headers(message: bytes, names: Sequence[str]) -> None:
    """Raise ValueError unless the header block holds exactly `names`, in order.

    Every line up to the first blank line must start one of those headers or continue
    the previous one, be ASCII and at most 998 characters (RFC 5322 §2.1.1): a bare CR
    or LF smuggled into a value, or a header we did not write, fails here.
    """
    end = message.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError("message has no blank line after its headers")
    head = message[:end]  # sliced, not split: the body is not copied
    unfolded = head.replace(b"\r\n", b"")
    if not head.isascii() or b"\n" in unfolded or b"\r" in unfolded:
        raise ValueError("header block holds a bare line break or non-ASCII byte")
    found: list[bytes] = []
    for line in head.split(b"\r\n"):
        if len(line) > 998:
            raise ValueError("header line longer than 998 characters")
        if line[:1] in (b" ", b"\t") and found:
            continue
        found.append(line.split(b":", 1)[0])
    if found != [name.encode("ascii") for name in names]:
        raise ValueError(f"unexpected header lines: {found!r}")


def _headers(request: MailRequest, rendered: RenderedMail) -> list[tuple[str, str]]:
    sender, recipient = request.sender, request.recipient
    if request.date.tzinfo is None:
        raise ValueError("message date must be timezone-aware")
    name = _words("From", sanitize_header_text(display_name(sender)), _PLAIN_PHRASE)
    subject = _words("Subject", sanitize_header_text(rendered.subject), _PLAIN_TEXT)
    headers = [
        ("From", _fold("From", [*name, f"<{_address(sender.from_address)}>"])),
        ("To", _address(recipient.address)),
        ("Subject", _fold("Subject", subject)),
        ("Date", email.utils.format_datetime(request.date)),
        ("Message-ID", _token(request.message_id, _MESSAGE_ID, "message id")),
    ]
    if request.kind is not MailKind.CONFIRM:  # a confirmation is not list mail
        headers += _list_headers(request)
    if sender.reply_to:
        headers.append(("Reply-To", _address(sender.reply_to)))
    language = _token(recipient.language, _LANGUAGE, "language")
    return [
        *headers,
        ("Auto-Submitted", "auto-generated"),  # RFC 3834 §5: no auto-replies to us
        ("X-Auto-Response-Suppress", "All"),  # the same for Exchange (MS-OXCMAIL)
        ("Content-Language", language),  # RFC 3282
        ("MIME-Version", "1.0"),
    ]


def _list_headers(request: MailRequest) -> list[tuple[str, str]]:
    """List-Id (RFC 2919) and the one-click unsubscribe pair (RFC 2369, RFC 8058)."""
    match = _LIST_ID.fullmatch(request.list_id)
    if match is None:
        raise ValueError(f"list id is not 'name <id>': {request.list_id!r}")
    phrase, list_id = match.groups()
    list_name = _words("List-Id", sanitize_header_text(phrase or ""), _PLAIN_PHRASE)
    url = _token(request.recipient.unsubscribe_url, _URI, "unsubscribe url")
    mailto = _token(request.recipient.unsubscribe_mailto, _URI, "unsubscribe mailto")
    if not url.startswith("https://") and not url.startswith("http://"):
        raise ValueError(f"unsubscribe url is not http(s): {url!r}")
    if not mailto.startswith("mailto:"):
        raise ValueError(f"unsubscribe mailto is not a mailto: URI: {mailto!r}")
    return [
        ("List-Id", _fold("List-Id", [*list_name, f"<{list_id}>"])),
        ("List-Unsubscribe", _fold("List-Unsubscribe", [f"<{url}>,", f"<{mailto}>"])),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


def _token(value: str, pattern: re.Pattern[str], what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise ValueError(f"{what} is not a plain header token: {value!r}")
    return value


def _address(value: str) -> str:
    """A bare ASCII addr-spec: no display name, no CR/LF, no comments, no list."""
    return _token(value, _ADDRESS, "address")


def _words(header: str, text: str, plain: re.Pattern[str]) -> list[str]:
    """Header words: kept as they are if `plain` ASCII, else RFC 2047 encoded-words.

    "=?" is always encoded: as plain text it may be an encoded-word lookalike that a
    client would decode into something else; inside an encoded-word it reads back
    literally, since decoded text is not decoded again. So is a word too long to
    fold within 78 characters.
    """
    if not text:
        return []
    words = text.split(" ")
    fits = max(map(len, words)) <= _LINE - len(header) - 2
    if fits and "=?" not in text and plain.fullmatch(text):
        return words
    return _encoded_words(header, text)


def _encoded_words(header: str, text: str) -> list[str]:
    """RFC 2047 encoded-words, each holding whole characters (§5), as few as fit.

    The first word fills what "Header: " leaves of a 78-character line; the others
    a continuation line. Fewer words matter: some readers (Python's own address
    parser among them) wrongly keep the space between two words of a display name.
    """
    budget = _base64_bytes(_LINE - len(header) - 2)
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if chunk and size + width > budget:
            words.append(_encode_word("".join(chunk)))
            chunk, size, budget = [], 0, _WORD_BYTES
        chunk.append(char)
        size += width
    words.append(_encode_word("".join(chunk)))
    return words


def _base64_bytes(width: int) -> int:
    """How many bytes an encoded-word of at most `width` characters can carry."""
    return (min(width, _WORD_LENGTH) - len("=?utf-8?b??=")) // 4 * 3


def _encode_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _fold(name: str, words: Iterable[str]) -> str:
    """`words` joined by spaces, folded (CRLF + space) before a line passes 78."""
    lines: list[str] = []
    line = ""
    used = len(name) + 2  # "Name: "
    for word in words:
        if line and used + 1 + len(word) > _LINE:
            lines.append(line)
            line, used = word, 1 + len(word)
        else:
            used += len(word) + (1 if line else 0)
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _part(boundary: str, subtype: str, text: str) -> bytes:
    """One base64 body part; text line ends made CRLF first (RFC 2046 §4.1.1)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = base64.b64encode(text.encode("utf-8").replace(b"\n", b"\r\n"))
    head = f"--{boundary}\r\n" + _PART_HEAD.format(subtype=subtype)
    # Slicing beats base64.encodebytes, which loops in Python over 57-byte chunks.
    step = _BASE64_LINE
    lines = [encoded[i : i + step] for i in range(0, len(encoded), step)]
    return b"".join((head.encode("ascii"), b"\r\n".join(lines), b"\r\n"))
