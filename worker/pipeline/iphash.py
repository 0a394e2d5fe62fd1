"""The keyed hash that replaces a client IP: defined once, used by the intake and the allow list.

The raw address never leaves the intake; the worker only ever sees this hash, so an allow list
of addresses has to be hashed with the same key (`IP_HASH_SECRET`) to be compared.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# A CIDR in the allow list is expanded to its addresses (their hashes); larger ones are refused.
MAX_CIDR_ADDRESSES = 65_536


def hash_ip(key: bytes, address: str) -> str:
    """The 32-hex-digit HMAC-SHA256 of `address` as the intake computes it."""
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip_list(spec: str) -> list[Network]:
    """The networks of a comma-separated list of IPs and CIDRs.

    Raises `ValueError` naming the entry for a malformed one or a network over
    `MAX_CIDR_ADDRESSES` addresses (hashes cannot be matched against a prefix).
    """
    networks: list[Network] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"ALLOWED_IPS: {item!r} is not an IP address or CIDR") from None
        if network.num_addresses > MAX_CIDR_ADDRESSES:
            raise ValueError(
                f"ALLOWED_IPS: {item!r} has {network.num_addresses} addresses; "
                f"at most {MAX_CIDR_ADDRESSES} per network can be hashed"
            )
        networks.append(network)
    return networks


def allowed_ip_hashes(key: bytes, spec: str) -> frozenset[str]:
    """Hashes of every address in `spec` (see `parse_ip_list`, which raises for a bad entry)."""
    hashes: set[str] = set()
    for network in parse_ip_list(spec):
        addresses = [network.network_address] if network.num_addresses == 1 else list(network)
        hashes.update(hash_ip(key, str(a)) for a in addresses)
    return frozenset(hashes)
