"""netguard: every SSRF category refused in every spelling, public addresses pass."""

from __future__ import annotations

import ipaddress

import pytest

from notifiers.errors import PermanentDeliveryError, TransientDeliveryError
from notifiers.netguard import (
    UnsafeDestination,
    check_address,
    check_url,
    resolve_checked,
)

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:2800:220:1::1",
    "2001:4860:4860::8888",
    "::ffff:93.184.216.34",  # IPv4-mapped, public inside
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]

# (address, a word the reason must contain)
REFUSED = [
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
    ("0.1.2.3", "this network"),
    ("10.0.0.1", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("172.31.255.255", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("192.0.0.9", "IETF protocol"),
    ("192.0.0.170", "IETF protocol"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "discard"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:10.0.0.1", "IPv4-mapped"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:0:192.168.0.1", "IPv4-translated"),
    ("64:ff9b::7f00:1", "NAT64"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4"),
    ("2002:c0a8:101::1", "RFC 1918"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("4000::1", "global unicast"),
]


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    check_address(ipaddress.ip_address(text))


@pytest.mark.parametrize(("text", "word"), REFUSED)
def test_each_category_is_refused_with_its_reason(text: str, word: str) -> None:
    ip = ipaddress.ip_address(text)
    with pytest.raises(UnsafeDestination) as caught:
        check_address(ip)
    message = str(caught.value)
    assert word in message
    assert message.startswith(f"{ip}: {ip} ")
    assert "\n" not in message


@pytest.mark.parametrize(("text", "word"), REFUSED)
def test_allow_private_lifts_every_refusal(text: str, word: str) -> None:
    assert word  # the same table, every row lifted
    check_address(ipaddress.ip_address(text), allow_private=True)


def test_unsafe_destination_is_a_permanent_delivery_error() -> None:
    assert issubclass(UnsafeDestination, PermanentDeliveryError)


def test_a_zone_id_is_refused() -> None:
    with pytest.raises(UnsafeDestination, match="zone id"):
        check_address(ipaddress.IPv6Address("2606:2800:220:1::1%eth0"))


# --- URLs at `subscribers add` ------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0X7F000001/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://0x7f.0.0.0x1/",
    "http://127.0.0.1./",
    "http://１２７.０.０.１/",
    "http://127。0。0。1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]:8080/",
    "http://[::ffff:7f00:1]/",
    "https://[64:ff9b::127.0.0.1]/",
    "https://[2002:7f00:1::]/",
]


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused(url: str) -> None:
    with pytest.raises(UnsafeDestination, match="loopback") as caught:
        check_url(url)
    assert str(caught.value).startswith(f"{url}: ")


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_allow_private_accepts_every_spelling(url: str) -> None:
    check_url(url, allow_private=True)


def test_the_message_names_the_url_and_the_reason() -> None:
    with pytest.raises(UnsafeDestination) as caught:
        check_url("http://10.0.0.1/x")
    assert str(caught.value) == (
        "http://10.0.0.1/x: 10.0.0.1 is a private address (RFC 1918)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",  # 169.254.169.254 as one number
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://[fe80::1%25eth0]/",
        "http://0/",
        "http://10.1/",
        "http://0x0a000001/",
        "http://[fd00::1]/",
        "http://[2001::1]/",
    ],
)
def test_metadata_and_other_literals_are_refused(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/kairan",
        "http://93.184.216.34:8080/in",
        "https://[2606:2800:220:1::1]/in",
        "https://1.2.3.example/",
        "HTTPS://Example.COM/",
    ],
)
def test_public_urls_pass(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.com/hook", "only http and https"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://@example.com/", "credentials"),
        ("http:///path", "no host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
        ("http://256.0.0.1/", "not a valid IPv4"),
        ("http://1.2.3.4.5/", "not a valid IPv4"),
        ("http://0x100000000/", "not a valid IPv4"),
        ("http://08.0.0.1/", "not a valid IPv4"),
        ("http://foo.123/", "not a valid IPv4"),
    ],
)
def test_malformed_urls_are_refused_even_when_private_is_allowed(
    url: str, reason: str
) -> None:
    with pytest.raises(UnsafeDestination, match=reason):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "api.localhost", "printer.local", "db.internal"],
)
def test_local_only_names_are_refused(host: str) -> None:
    with pytest.raises(UnsafeDestination, match="local-only name"):
        check_url(f"http://{host}/hook")
    check_url(f"http://{host}/hook", allow_private=True)


# --- connect time -------------------------------------------------------------------


class ScriptedResolver:
    """Answers each lookup with the next scripted list, recording what was asked."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers.pop(0)


async def test_a_public_name_resolves_to_its_addresses() -> None:
    resolver = ScriptedResolver(
        ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]
    )
    got = await resolve_checked("example.com", 443, resolver=resolver)
    assert got == ["93.184.216.34", "2606:2800:220:1::1"]  # deduplicated, in order
    assert resolver.asked == [("example.com", 443)]


async def test_rebinding_is_refused_on_the_second_lookup() -> None:
    resolver = ScriptedResolver(["93.184.216.34"], ["127.0.0.1"])
    check_url("https://rebind.example/hook")
    assert await resolve_checked("rebind.example", 443, resolver=resolver) == [
        "93.184.216.34"
    ]
    with pytest.raises(UnsafeDestination) as caught:
        await resolve_checked("rebind.example", 443, resolver=resolver)
    assert str(caught.value) == (
        "rebind.example: resolved address 127.0.0.1 is a loopback address"
        " (RFC 1122 §3.2.1.3)"
    )


async def test_one_private_answer_among_public_ones_refuses_the_host() -> None:
    resolver = ScriptedResolver(["93.184.216.34", "10.0.0.5"])
    with pytest.raises(UnsafeDestination, match="RFC 1918"):
        await resolve_checked("mixed.example", 80, resolver=resolver)


async def test_a_mapped_private_answer_is_refused() -> None:
    resolver = ScriptedResolver(["::ffff:169.254.169.254"])
    with pytest.raises(UnsafeDestination, match="metadata"):
        await resolve_checked("sneaky.example", 80, resolver=resolver)


async def test_allow_private_returns_private_answers() -> None:
    resolver = ScriptedResolver(["127.0.0.1"])
    got = await resolve_checked(
        "localhost", 8080, allow_private=True, resolver=resolver
    )
    assert got == ["127.0.0.1"]


async def test_a_local_name_is_refused_without_a_lookup() -> None:
    resolver = ScriptedResolver(["93.184.216.34"])
    with pytest.raises(UnsafeDestination, match="local-only"):
        await resolve_checked("metadata.google.internal", 80, resolver=resolver)
    assert resolver.asked == []


async def test_an_ip_literal_is_checked_and_normalised_without_a_lookup() -> None:
    resolver = ScriptedResolver()
    assert await resolve_checked("0x5db8d822", 80, resolver=resolver) == [
        "93.184.216.34"
    ]
    with pytest.raises(UnsafeDestination, match="loopback"):
        await resolve_checked("127.1", 80, resolver=resolver)
    assert resolver.asked == []


async def test_a_garbage_answer_is_refused() -> None:
    resolver = ScriptedResolver(["not-an-address"])
    with pytest.raises(UnsafeDestination, match="resolver answered"):
        await resolve_checked("odd.example", 80, resolver=resolver)


async def test_no_answer_is_transient() -> None:
    resolver = ScriptedResolver([])
    with pytest.raises(TransientDeliveryError, match="no addresses"):
        await resolve_checked("empty.example", 80, resolver=resolver)


async def test_a_lookup_failure_is_transient() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise OSError(f"cannot resolve {host}:{port}")

    with pytest.raises(TransientDeliveryError, match="cannot resolve"):
        await resolve_checked("down.example", 80, resolver=failing)
