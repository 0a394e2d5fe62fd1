"""The keyed hash that replaces a client IP: defined once, used by the intake and the allow list.

The raw address never leaves the intake; the worker only ever sees this hash, so an allow list
of addresses has to be hashed with the same key (`IP_HASH_SECRET`) to be compared. What is
hashed is the client's key (`client_address.client_key`): an IPv6 client is its /64 (or
`IPV6_PREFIX_LENGTH`), so the allow list hashes networks of that size, not addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from worker.pipeline.client_address import Network, client_key, parse_networks

# A CIDR in the allow list is expanded to its client keys (their hashes); larger ones are refused.
MAX_CIDR_ADDRESSES = 65_536
DEFAULT_IPV6_PREFIX = 64


def hash_ip(key: bytes, address: str) -> str:
    """The 32-hex-digit HMAC-SHA256 of `address` (a client key) as the intake computes it."""
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


def _keys_in(network: Network, ipv6_prefix: int) -> int:
    """How many client keys `network` holds: addresses for IPv4, /`ipv6_prefix` networks for IPv6."""
    if network.version == 4:
        return network.num_addresses
    return int(2 ** max(0, ipv6_prefix - network.prefixlen))


def parse_ip_list(spec: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> list[Network]:
    """The networks of a comma-separated list of IPs and CIDRs.

    Raises `ValueError` naming the entry for a malformed one or a network of more than
    `MAX_CIDR_ADDRESSES` client keys (hashes cannot be matched against a prefix).
    """
    networks = parse_networks(spec, "ALLOWED_IPS")
    for network in networks:
        keys = _keys_in(network, ipv6_prefix)
        if keys > MAX_CIDR_ADDRESSES:
            raise ValueError(
                f"ALLOWED_IPS: {str(network)!r} has {keys} clients (an IPv6 client is a "
                f"/{ipv6_prefix}); at most {MAX_CIDR_ADDRESSES} per network can be hashed"
            )
    return networks


def client_keys(network: Network, ipv6_prefix: int) -> set[str]:
    """The client keys in `network` (see `client_key`)."""
    if network.version == 4:
        addresses = [network.network_address] if network.num_addresses == 1 else list(network)
        return {str(a) for a in addresses}
    if network.prefixlen >= ipv6_prefix:
        return {client_key(network.network_address, ipv6_prefix)}
    assert isinstance(network, ipaddress.IPv6Network)
    return {client_key(s.network_address, ipv6_prefix) for s in network.subnets(new_prefix=ipv6_prefix)}


def allowed_ip_hashes(key: bytes, spec: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> frozenset[str]:
    """Hashes of every client key in `spec` (see `parse_ip_list`, which raises for a bad entry)."""
    hashes: set[str] = set()
    for network in parse_ip_list(spec, ipv6_prefix):
        hashes.update(hash_ip(key, k) for k in client_keys(network, ipv6_prefix))
    return frozenset(hashes)
