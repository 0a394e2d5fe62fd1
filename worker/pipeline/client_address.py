"""Who is the client: the address a request came from, behind trusted proxies or not. Pure.

A proxy appends the address it received the request from on the *right* of `X-Forwarded-For`
(or adds a `for=` element to `Forwarded`, RFC 7239); everything to the left is whatever the
client wrote itself. So the header is read only when the direct peer is a trusted proxy, and
the client is the rightmost address in it that is not itself a trusted proxy (the rule of
uvicorn's `forwarded_allow_ips` and Werkzeug's `ProxyFix`). An entry that is not an address
(`unknown`, an obfuscated `_name`, garbage) is skipped, never an error.

The rate limits and the allow list then see one key per client: an IPv4 address as it is, an
IPv6 address as its /`prefix` network (one subscriber usually holds a whole /64), and an
IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDING_HEADERS = ("x-forwarded-for", "forwarded")
MAX_HEADER_CHARS = 4096  # a longer header is read only this far from its right end


def parse_address(text: str) -> Address | None:
    """An address written as a header or a peer gives it: `192.0.2.1`, `192.0.2.1:8080`,
    `2001:db8::1`, `[2001:db8::1]:443`, quoted or not; None for anything else."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two colons or more
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # an IPv6 zone (fe80::1%eth0) says nothing about the client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return unmapped(address)


def unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 address it is; any other address unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(spec: str, variable: str) -> list[Network]:
    """The networks of a comma-separated list of IPs and CIDRs (IPv4-mapped ones as IPv4).
    Raises `ValueError` naming `variable` and the entry for a malformed one."""
    networks: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{variable}: {item!r} is not an IP address or CIDR") from None
        mapped = network.network_address.ipv4_mapped if network.version == 6 else None
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:a.b.c.d/n is IPv4 a.b.c.d/(n-96)
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96), strict=False)
        networks.append(network)
    return networks


def is_trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def forwarded_chain(header: str, values: Iterable[str]) -> list[str]:
    """The address entries of every `header` line, left to right (`for=` values of `Forwarded`)."""
    text = ",".join(values)[-MAX_HEADER_CHARS:]
    if header != "forwarded":
        return text.split(",")
    chain = []
    for element in text.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                chain.append(value)
    return chain


def client_address(
    peer: str | None, header: str, values: Sequence[str], proxies: Sequence[Network]
) -> Address | str | None:
    """The client's address. `peer` is the direct peer as the server reports it; `values` are
    the lines of the forwarding `header` ("x-forwarded-for" or "forwarded"; empty: none read).

    The header counts only when the peer is in `proxies`; then the rightmost entry that is an
    address and not a trusted proxy is the client. A peer that is no IP address (a test
    client, a Unix socket's name) is returned as it is; None when there is no peer.
    """
    if peer is None:
        return None
    address = parse_address(peer)
    if address is None:
        return peer
    if not header or not values or not is_trusted(address, proxies):
        return address
    for entry in reversed(forwarded_chain(header, values)):
        hop = parse_address(entry)
        if hop is None:
            continue  # malformed: skipped
        if not is_trusted(hop, proxies):
            return hop
        address = hop  # every hop so far is a trusted proxy: the leftmost of them, if none else
    return address


def client_key(address: Address | str, ipv6_prefix: int) -> str:
    """What the rate limits and allow lists key on (before hashing): an IPv4 address as it is,
    an IPv6 address as its /`ipv6_prefix` network (`2001:db8:1:2::/64`); anything else as it is."""
    if isinstance(address, str):
        parsed = parse_address(address)
        if parsed is None:
            return address
        address = parsed
    address = unmapped(address)
    if address.version == 4 or ipv6_prefix >= 128:
        return str(address)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
