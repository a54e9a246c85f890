"""The SSRF guard: refuse webhook destinations in the operator's network (issue 5 §4).

Two checkpoints. `check_url` runs at ``subscribers add``: scheme, host, userinfo and
any IP literal in any spelling a resolver would accept. `resolve_checked` runs at
connect time: it resolves once, checks every answer and returns the addresses to
connect to, so a second lookup (DNS rebinding) never gets a say.

Refused, with the reason in the message (IPv4):

- 0.0.0.0/8 "this network", incl. the unspecified 0.0.0.0 (RFC 791, RFC 1122 §3.2.1.3)
- 10/8, 172.16/12, 192.168/16 private (RFC 1918); 100.64/10 carrier-grade NAT (RFC 6598)
- 127/8 loopback (RFC 1122 §3.2.1.3)
- 169.254/16 link-local (RFC 3927), incl. the cloud metadata 169.254.169.254
- 192.0.0.0/24 IETF protocol assignments (RFC 6890)
- 192.88.99.0/24 deprecated 6to4 relay anycast (RFC 7526)
- 192.0.2/24, 198.51.100/24, 203.0.113/24 documentation (RFC 5737)
- 198.18/15 benchmarking (RFC 2544); 224/4 multicast (RFC 5771)
- 255.255.255.255 limited broadcast (RFC 919); 240/4 reserved (RFC 1112 §4)

IPv6: :: unspecified, ::1 loopback, fe80::/10 link-local, ff00::/8 multicast (RFC 4291);
fc00::/7 unique-local (RFC 4193); fec0::/10 site-local (RFC 3879); 100::/64 discard
(RFC 6666); 2001:db8::/32 and 3fff::/20 documentation (RFC 3849, RFC 9637); 2001:2::/48
benchmarking (RFC 5180); 2001:10::/28 and 2001:20::/28 ORCHID (RFC 4843, RFC 7343);
Teredo 2001::/32 outright (RFC 4380: the client address is obfuscated and the server is
any IPv4, so nothing trustworthy is left to check); local-use NAT64 64:ff9b:1::/48
outright (RFC 8215: the embedded IPv4's position depends on the local prefix length);
the deprecated IPv4-compatible ::/96 outright (RFC 4291 §2.5.5.1); anything outside
global unicast 2000::/3 (RFC 4291 §2.4); any address with a zone id (RFC 6874: it names
one of our interfaces). IPv4-mapped ::ffff:0:0/96 (RFC 4291 §2.5.5.2), IPv4-translated
::ffff:0:0:0/96 (RFC 2765 §2.1), NAT64 64:ff9b::/96 (RFC 6052) and 6to4 2002::/16
(RFC 3056) are judged by the IPv4 address they embed.

Finally, whatever the stdlib's ``is_global`` does not call global is refused too, as a
backstop only: Python 3.11's tables miss 100.64/10 in ``is_private``, call all of
192.0.0.0/24 but a few hosts global, and treat every ::ffff:0:0/96 address as private
whatever it embeds, so the explicit networks above decide first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from notifiers.errors import PermanentDeliveryError, TransientDeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins, so the specific entries precede the ranges that contain them.
_IPV4_REFUSED: tuple[tuple[_V4, str], ...] = (
    (_V4("0.0.0.0/32"), "the unspecified address (RFC 1122 §3.2.1.3)"),
    (_V4("0.0.0.0/8"), 'in "this network" 0.0.0.0/8 (RFC 791, RFC 1122 §3.2.1.3)'),
    (_V4("10.0.0.0/8"), "a private address (RFC 1918)"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address (RFC 6598)"),
    (_V4("127.0.0.0/8"), "a loopback address (RFC 1122 §3.2.1.3)"),
    (_V4("169.254.169.254/32"), "the cloud metadata service (link-local, RFC 3927)"),
    (_V4("169.254.0.0/16"), "a link-local address (RFC 3927)"),
    (_V4("172.16.0.0/12"), "a private address (RFC 1918)"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment (RFC 6890)"),
    (_V4("192.0.2.0/24"), "a documentation address (RFC 5737)"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay anycast address (RFC 7526)"),
    (_V4("192.168.0.0/16"), "a private address (RFC 1918)"),
    (_V4("198.18.0.0/15"), "a benchmarking address (RFC 2544)"),
    (_V4("198.51.100.0/24"), "a documentation address (RFC 5737)"),
    (_V4("203.0.113.0/24"), "a documentation address (RFC 5737)"),
    (_V4("224.0.0.0/4"), "a multicast address (RFC 5771)"),
    (_V4("255.255.255.255/32"), "the limited broadcast address (RFC 919)"),
    (_V4("240.0.0.0/4"), "a reserved address (RFC 1112 §4)"),
)

_IPV6_REFUSED: tuple[tuple[_V6, str], ...] = (
    (_V6("::/128"), "the unspecified address (RFC 4291 §2.5.2)"),
    (_V6("::1/128"), "the loopback address (RFC 4291 §2.5.3)"),
    (_V6("::/96"), "a deprecated IPv4-compatible address (RFC 4291 §2.5.5.1)"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address (RFC 8215)"),
    (_V6("100::/64"), "a discard-only address (RFC 6666)"),
    (_V6("2001::/32"), "a Teredo address (RFC 4380)"),
    (_V6("2001:2::/48"), "a benchmarking address (RFC 5180)"),
    (_V6("2001:10::/28"), "a deprecated ORCHID address (RFC 4843)"),
    (_V6("2001:20::/28"), "an ORCHIDv2 address, not routable (RFC 7343)"),
    (_V6("2001:db8::/32"), "a documentation address (RFC 3849)"),
    (_V6("3fff::/20"), "a documentation address (RFC 9637)"),
    (_V6("fc00::/7"), "a unique-local address (RFC 4193)"),
    (_V6("fe80::/10"), "a link-local address (RFC 4291 §2.5.6)"),
    (_V6("fec0::/10"), "a deprecated site-local address (RFC 3879)"),
    (_V6("ff00::/8"), "a multicast address (RFC 4291 §2.7)"),
)

_GLOBAL_UNICAST = _V6("2000::/3")

# IPv6 forms judged by the IPv4 address in their last 32 bits.
_EMBEDDING: tuple[tuple[_V6, str], ...] = (
    (_V6("::ffff:0:0/96"), "IPv4-mapped, RFC 4291 §2.5.5.2"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated, RFC 2765 §2.1"),
    (_V6("64:ff9b::/96"), "NAT64, RFC 6052"),
)

# Names that only ever mean this machine or its own network (RFC 6761 §6.3, RFC 6762,
# RFC 8375; .internal is reserved for private use by ICANN).
_LOCAL_NAMES = ("localhost",)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")

# The full stops IDNA (UTS #46) maps to "." before a client looks the name up.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


class UnsafeDestination(PermanentDeliveryError):
    """A webhook destination the SSRF guard refuses; the message says which and why."""

    def __init__(self, destination: str, reason: str) -> None:
        self.destination = destination
        self.reason = reason
        super().__init__(f"{destination}: {reason}")


def check_address(ip: IPAddress, *, allow_private: bool = False) -> None:
    """Raise `UnsafeDestination` unless ``ip`` is a public unicast address."""
    if allow_private:
        return
    reason = _refusal(ip)
    if reason is not None:
        raise UnsafeDestination(str(ip), reason)


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse ``url`` at ``subscribers add`` unless it is a plain http(s) URL to a host
    that is not ours; hostnames are checked again, resolved, by `resolve_checked`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise UnsafeDestination(url, f"not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeDestination(url, "only http and https URLs are accepted")
    if "@" in parts.netloc:
        raise UnsafeDestination(url, "credentials in the URL are not accepted")
    if not parts.hostname:
        raise UnsafeDestination(url, "the URL has no host")
    try:
        _check_host(parts.hostname, allow_private=allow_private)
    except UnsafeDestination as exc:
        # Named by the URL now; chaining would print the reason twice (KairanError).
        raise UnsafeDestination(url, exc.reason) from None


async def resolve_checked(
    host: str,
    port: int,
    *,
    allow_private: bool = False,
    resolver: Resolver | None = None,
) -> list[str]:
    """Resolve ``host`` once and return its addresses, refusing the host if any one is
    unsafe (a rebinding name may mix a public answer with a private one). Connect to
    the returned addresses, never to the name, so no second lookup can differ."""
    literal = _check_host(host, allow_private=allow_private)
    if literal is not None:
        return [str(literal)]
    resolve = resolver if resolver is not None else _system_resolver
    try:
        answers = await resolve(host, port)
    except OSError as exc:
        raise TransientDeliveryError(f"{host}: cannot resolve ({exc})") from exc
    if not answers:
        raise TransientDeliveryError(f"{host}: the name has no addresses")
    addresses = list(dict.fromkeys(_parse_answer(host, answer) for answer in answers))
    for ip in addresses:
        try:
            check_address(ip, allow_private=allow_private)
        except UnsafeDestination as exc:
            raise UnsafeDestination(host, f"resolved address {exc.reason}") from None
    return [str(ip) for ip in addresses]


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def _parse_answer(host: str, answer: str) -> IPAddress:
    try:
        return ipaddress.ip_address(answer)
    except ValueError as exc:
        raise UnsafeDestination(host, f"the resolver answered {answer!r}") from exc


def _check_host(host: str, *, allow_private: bool) -> IPAddress | None:
    """Check a URL's host; return it as an address when it is an IP literal."""
    name = unicodedata.normalize("NFKC", host).translate(_DOTS).casefold()
    name = name.removesuffix(".")
    literal = _ip_literal(name)
    if literal is not None:
        check_address(literal, allow_private=allow_private)
    elif not allow_private and (name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES)):
        raise UnsafeDestination(
            host, f"{host} is a local-only name (RFC 6761, RFC 6762, RFC 8375)"
        )
    return literal


def _ip_literal(name: str) -> IPAddress | None:
    """The address ``name`` spells, in any form inet_aton or WHATWG URLs accept."""
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name)
        except ValueError as exc:
            raise UnsafeDestination(
                name, f"{name} is not a valid IPv6 address"
            ) from exc
    labels = name.split(".")
    # As WHATWG's URL standard: a host whose last label is a number is an IPv4 address
    # or invalid, never a name to look up.
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    try:
        return ipaddress.IPv4Address(_ipv4_value(labels))
    except ValueError as exc:
        raise UnsafeDestination(name, f"{name} is not a valid IPv4 address") from exc


def _ipv4_value(labels: list[str]) -> int:
    """1 to 4 numbers, the last filling the remaining bytes: "127.1", "0x7f000001"."""
    if len(labels) > 4:
        raise ValueError("more than four parts")
    numbers = [_ipv4_number(label) for label in labels]
    head, last = numbers[:-1], numbers[-1]
    tail_bits = 8 * (5 - len(labels))
    if any(n > 255 for n in head) or last >> tail_bits:
        raise ValueError("a part is out of range")
    value = 0
    for n in head:
        value = value << 8 | n
    return value << tail_bits | last


def _ipv4_number(label: str) -> int:
    """A decimal, 0x-hex or 0-octal number, as inet_aton(3) reads it."""
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label, 10)


def _refusal(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip)
    return _ipv6_refusal(ip)


def _ipv4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _IPV4_REFUSED:
        if ip in network:
            return f"{ip} is {reason}"
    return _backstop(ip)


def _ipv6_refusal(ip: ipaddress.IPv6Address) -> str | None:
    if ip.scope_id is not None:
        return f"{ip} has a zone id, which names a local interface (RFC 6874)"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        kind, v4 = embedded
        inner = _ipv4_refusal(v4)
        return None if inner is None else f"{ip} embeds {v4} ({kind}): {inner}"
    for network, reason in _IPV6_REFUSED:
        if ip in network:
            return f"{ip} is {reason}"
    if ip not in _GLOBAL_UNICAST:
        return f"{ip} is outside global unicast 2000::/3 (RFC 4291 §2.4)"
    return _backstop(ip)


def _embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[str, ipaddress.IPv4Address] | None:
    for network, kind in _EMBEDDING:
        if ip in network:
            return kind, ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4, RFC 3056", ip.sixtofour
    return None


def _backstop(ip: IPAddress) -> str | None:
    if ip.is_global:
        return None
    return f"{ip} is not globally reachable (IANA special-purpose registry, RFC 6890)"
