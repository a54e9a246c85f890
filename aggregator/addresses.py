"""Pure: validate subscriber e-mail addresses, and their uniqueness/suppression keys.

Syntax is email-validator's (RFC 5321/5322, RFC 6531 for internationalised
addresses), with no DNS lookup. Before it runs we refuse, with our own message,
what an operator or a sign-up form could use to reach a header or a second
recipient: line breaks and other controls, display names, comments, quoted
local parts and lists of addresses (issue 3: "no CR/LF, no display-name tricks").
"""

from __future__ import annotations

import hashlib
import unicodedata

from email_validator import EmailNotValidError, validate_email

from aggregator.errors import UsageError

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets, "<" and ">" included. In
# UTF-8 (RFC 6531) no character is shorter than an octet, so a longer input can
# be refused before it is parsed.
MAX_LENGTH = 254

# Characters that only an address *list* or a header value would hold; each is
# refused outright rather than left to the syntax check's generic message.
_REFUSED = (
    (("<", ">"), "a display name or angle brackets are not accepted"),
    ((",", ";"), "more than one address"),
    (("(", ")"), "comments are not accepted"),
    (('"',), "quoted local parts are not accepted"),
)


def normalize_email(text: str) -> str:
    """The address as it is stored and mailed, or UsageError naming the problem.

    Surrounding spaces are dropped. The domain comes back lower-cased in its
    ASCII (IDNA) form (``A@例え.jp`` is ``A@xn--r8jz45g.jp``): that form needs no
    SMTPUTF8, which many municipal mail servers do not offer; for the same reason
    a non-ASCII local part (RFC 6531) is refused. The local part
    keeps its case, because RFC 5321 §2.4 lets the receiving server treat it as
    case-sensitive.
    """
    address = text.strip(" ")
    _refuse_hostile(text, address)
    local_part, _, domain = address.rpartition("@")
    _refuse_compatibility_forms(text, local_part, domain)
    try:
        validated = validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
        )
    except EmailNotValidError as e:
        raise _invalid(text, _sentence_to_clause(str(e))) from None
    return validated.ascii_email or validated.normalized


def address_key(address: str) -> str:
    """The form addresses are compared in, for uniqueness and suppression.

    NFKC, then lower-cased whole: ``Taro@example.jp`` and ``taro@example.jp`` are
    one subscriber, as virtually every mail provider treats them. Give it what
    `normalize_email` returned, so that a Punycode domain is already Unicode.
    """
    return unicodedata.normalize("NFKC", address).lower()


def suppression_hash(address: str) -> str:
    """SHA-256 (hex) of the address key: kept after a subscriber is forgotten, so
    a re-import recognises the address without the address itself being kept."""
    return hashlib.sha256(address_key(address).encode("utf-8")).hexdigest()


def _refuse_hostile(text: str, address: str) -> None:
    if not address:
        raise UsageError("e-mail address is empty")
    if len(address) > MAX_LENGTH:
        raise _invalid(text, f"longer than {MAX_LENGTH} characters")
    if any(c in "\r\n" for c in address):
        raise _invalid(text, "contains a line break")
    control = next((c for c in address if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise _invalid(text, f"contains the control character U+{ord(control):04X}")
    for characters, problem in _REFUSED:
        if any(c in address for c in characters):
            raise _invalid(text, problem)


def _refuse_compatibility_forms(text: str, local_part: str, domain: str) -> None:
    """Refuse a local part that NFKC would change, e.g. full-width ``ｔａｒｏ``.

    Such a part is almost always an input-method slip, would need SMTPUTF8 to be
    delivered at all, and collides with its half-width twin in `address_key`;
    UTS #39 §3.3 (email security profile) asks for NFKC local parts too. The
    domain needs no such check: IDNA maps it. Checked before email-validator, so
    the message can suggest the half-width address.
    """
    folded = unicodedata.normalize("NFKC", local_part)
    if folded != local_part:
        suggestion = f"{folded}@{domain}"
        raise _invalid(
            text,
            f"full-width or compatibility characters before the @"
            f" (did you mean {suggestion!r}?)",
        )


def _sentence_to_clause(message: str) -> str:
    """email-validator's "The … is not valid. It …." as our lower-case clauses."""
    sentences = message.strip().rstrip(".").split(". ")
    return "; ".join(s[:1].lower() + s[1:] for s in sentences)


def _invalid(text: str, problem: str) -> UsageError:
    shown = text if len(text) <= 80 else f"{text[:80]}…"
    return UsageError(f"invalid e-mail address {shown!r}: {problem}")
