"""The pure abuse step and the allow-list hashing: no Redis, no PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.pipeline.abuse import (
    AbusePolicy,
    PriorCounts,
    RateLimit,
    in_domains,
    judge,
    parse_domains,
    parse_emails,
    rows_to_count,
)
from worker.pipeline.iphash import allowed_ip_hashes, hash_ip
from worker.pipeline.plan import Row

KEY = b"secret"
T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def row(receipt: str, email: str = "ann@example.org", ip: str | None = "ip1") -> Row:
    return Row(receipt, 1, email, email.lower(), "Ann", None, None, False, ip, T0)


def states(rows: list[Row]) -> dict[str, str]:
    return {r.receipt: r.state for r in rows}


def test_a_row_is_fraudulent_exactly_when_a_window_already_holds_its_limit() -> None:
    policy = AbusePolicy(burst=RateLimit(1, 60), sustained=RateLimit(5, 300))
    rows = [row("first"), row("burst"), row("fifth"), row("sixth")]
    counts = {
        "first": PriorCounts(0, 0),
        "burst": PriorCounts(1, 1),
        "fifth": PriorCounts(0, 4),
        "sixth": PriorCounts(0, 5),
    }
    assert states(judge(rows, counts, policy)) == {
        "first": "validated",
        "burst": "fraudulent",
        "fifth": "validated",
        "sixth": "fraudulent",
    }


def test_a_limit_of_zero_is_no_limit() -> None:
    policy = AbusePolicy(burst=RateLimit(0, 60), sustained=RateLimit(5, 300))
    assert states(judge([row("r")], {"r": PriorCounts(9, 4)}, policy)) == {"r": "validated"}
    off = AbusePolicy(burst=RateLimit(0, 60), sustained=RateLimit(0, 300))
    assert rows_to_count([row("r")], off) == []


def test_allowed_ips_and_domains_are_not_counted_and_never_rate_limited() -> None:
    policy = AbusePolicy(allowed_ip_hashes=frozenset({"office"}), allowed_domains=frozenset({"ox.ac.uk"}))
    rows = [row("a", ip="office"), row("b", "x@cs.ox.ac.uk"), row("c"), row("d", ip=None)]
    assert [r.receipt for r in rows_to_count(rows, policy)] == ["c"]
    over = {r.receipt: PriorCounts(7, 7) for r in rows}
    assert states(judge(rows, over, policy)) == {
        "a": "validated",
        "b": "validated",
        "c": "fraudulent",
        "d": "validated",
    }


def test_blocked_emails_and_domains_are_fraudulent_even_from_allowed_sources() -> None:
    policy = AbusePolicy(
        allowed_ip_hashes=frozenset({"office"}),
        blocked_domains=parse_domains("Spam.Example, @bad.test"),
        blocked_emails=parse_emails("Ann.Lee+petition@googlemail.com"),
    )
    rows = [
        row("blocked-email", "annlee@gmail.com", ip="office"),
        row("blocked-domain", "x@mail.spam.example", ip="office"),
        row("blocked-at", "y@bad.test"),
        row("fine", "z@example.org", ip="office"),
    ]
    assert states(judge(rows, {}, policy)) == {
        "blocked-email": "fraudulent",
        "blocked-domain": "fraudulent",
        "blocked-at": "fraudulent",
        "fine": "validated",
    }


def test_domains_match_themselves_and_their_subdomains_only() -> None:
    listed = frozenset({"ox.ac.uk"})
    assert in_domains("ox.ac.uk", listed) and in_domains("cs.ox.ac.uk", listed)
    assert not in_domains("fox.ac.uk", listed) and not in_domains("ac.uk", listed)


def test_the_allow_list_hashes_addresses_and_small_networks_like_the_intake() -> None:
    hashes = allowed_ip_hashes(KEY, " 192.0.2.7 , 198.51.100.0/30, 2001:db8::1 ")
    # An IPv6 client is its /64, as the intake hashes it.
    assert hash_ip(KEY, "192.0.2.7") in hashes and hash_ip(KEY, "2001:db8::/64") in hashes
    assert {hash_ip(KEY, f"198.51.100.{n}") for n in range(4)} <= hashes
    assert len(hashes) == 6
    assert allowed_ip_hashes(KEY, "") == frozenset()


def test_the_allow_list_takes_ipv6_networks_as_their_64s_and_mapped_addresses_as_ipv4() -> None:
    hashes = allowed_ip_hashes(KEY, "2001:db8:0:4::/62, ::ffff:192.0.2.9")
    assert hashes == {hash_ip(KEY, f"2001:db8:0:{n}::/64") for n in range(4, 8)} | {hash_ip(KEY, "192.0.2.9")}
    assert allowed_ip_hashes(KEY, "2001:db8::/64") == {hash_ip(KEY, "2001:db8::/64")}


@pytest.mark.parametrize("spec", ["10.0.0.0/8", "not-an-ip", "2001:db8::/40"])
def test_an_allow_list_entry_that_cannot_be_hashed_is_refused_by_name(spec: str) -> None:
    with pytest.raises(ValueError, match="ALLOWED_IPS"):
        allowed_ip_hashes(KEY, spec)


def test_settings_refuse_an_allow_list_that_cannot_be_hashed_at_start() -> None:
    from pydantic import ValidationError

    from worker.settings import Settings

    with pytest.raises(ValidationError, match=r"10\.0\.0\.0/8"):
        Settings.from_env({"ALLOWED_IPS": "192.0.2.1, 10.0.0.0/8"})
    assert Settings.from_env({"ALLOWED_IPS": "192.0.2.0/24"}).allowed_ips == "192.0.2.0/24"
