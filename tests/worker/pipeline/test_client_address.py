"""Who the client is, behind proxies or not, and what the limits key on: pure, property-based."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from worker.pipeline.client_address import (
    client_address,
    client_key,
    forwarded_chain,
    parse_address,
    parse_networks,
)

PROXIES = parse_networks("10.0.0.0/8, 2001:db8:ffff::/48", "TRUSTED_PROXIES")
trusted_ips = st.one_of(
    st.integers(0, 2**24 - 1).map(lambda n: str(ipaddress.IPv4Address(0x0A000000 + n))),
    st.integers(0, 2**80 - 1).map(lambda n: str(ipaddress.IPv6Address((0x20010DB8FFFF << 80) + n))),
)
public_ips = st.one_of(
    st.ip_addresses(v=4).filter(lambda a: a not in PROXIES[0]),
    st.ip_addresses(v=6).filter(lambda a: a not in PROXIES[1] and a.ipv4_mapped is None),
).map(str)
# Whatever a client writes into the header itself: addresses, words, separators, garbage.
client_written = st.lists(st.one_of(public_ips, trusted_ips, st.text(max_size=20)), max_size=6)


def xff(entries: list[str]) -> list[str]:
    return [", ".join(entries)]


@given(client_written, public_ips, st.lists(trusted_ips, max_size=3), trusted_ips)
@example(["10.1.0.1", "127.0.0.1"], "203.0.113.7", [], "10.0.0.1")  # the spoof that used to work
def test_behind_trusted_proxies_the_client_is_the_rightmost_untrusted_address(
    forged: list[str], client: str, hops: list[str], peer: str
) -> None:
    # Given what the client wrote, then the address the first proxy saw, then each further proxy
    chain = [*forged, client, *hops]
    # When the last proxy (the peer) passes the request on, the client is the address it saw
    found = client_address(peer, "x-forwarded-for", xff(chain), PROXIES)
    assert str(found) == str(ipaddress.ip_address(client))


@given(st.lists(st.text(max_size=60), max_size=4), public_ips)
def test_from_an_untrusted_peer_the_header_is_never_read(values: list[str], peer: str) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        assert str(client_address(peer, header, values, PROXIES)) == str(ipaddress.ip_address(peer))


@given(st.lists(st.text(), max_size=4), st.one_of(trusted_ips, st.text(max_size=40)))
def test_any_header_from_any_peer_gives_an_answer_never_an_error(values: list[str], peer: str) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        client_address(peer, header, values, PROXIES)


@given(client_written, public_ips, trusted_ips)
def test_the_forwarded_header_follows_the_same_rule(forged: list[str], client: str, peer: str) -> None:
    def node(address: str) -> str:
        return f'for="[{address}]:4711"' if ":" in address else f"for={address};proto=https"

    value = ", ".join([*(f"for={entry}" for entry in forged), node(client), f"for={peer};by=x"])
    assert str(client_address(peer, "forwarded", [value], PROXIES)) == str(ipaddress.ip_address(client))


def test_malformed_entries_are_skipped_and_separate_header_lines_are_one_chain() -> None:
    lines = ["198.51.100.1", "unknown, not-an-ip, 10.0.0.9"]
    assert str(client_address("10.0.0.1", "x-forwarded-for", lines, PROXIES)) == "198.51.100.1"
    # Only proxies and garbage: the leftmost proxy stands for the client.
    assert str(client_address("10.0.0.1", "x-forwarded-for", ["junk, 10.0.0.7"], PROXIES)) == "10.0.0.7"
    assert forwarded_chain("forwarded", ['for=_hidden;proto=http, For="192.0.2.1:80"']) == [
        "_hidden",
        '"192.0.2.1:80"',
    ]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ('"[2001:db8::1]:443"', "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the IPv4 client it is
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("[2001:db8::1", None),
        ("", None),
    ],
)
def test_addresses_are_read_as_proxies_write_them(text: str, address: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == address


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_every_address_of_an_ipv6_64_is_one_client(network: int, host: int) -> None:
    address = ipaddress.IPv6Address((network << 64) | host)
    if address.ipv4_mapped is not None:
        return
    assert client_key(address, 64) == client_key(ipaddress.IPv6Address(network << 64), 64)
    assert client_key(str(address), 64) == f"{ipaddress.IPv6Address(network << 64)}/64"


def test_ipv4_and_mapped_ipv4_are_one_client_and_other_text_stays_as_it_is() -> None:
    assert client_key("::ffff:198.51.100.7", 64) == client_key("198.51.100.7", 64) == "198.51.100.7"
    assert client_key("2001:db8::1", 128) == "2001:db8::1"
    assert client_key("testclient", 64) == "testclient"


def test_a_malformed_proxy_list_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES: 'nope'"):
        parse_networks("10.0.0.1, nope", "TRUSTED_PROXIES")
