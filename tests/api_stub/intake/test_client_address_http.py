"""The client address through the real app, Redis and PostgreSQL: a forged forwarding header or a
rotating IPv6 address does not escape the per-client limits, and a misconfiguration refuses to
start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import BEHIND_PROXY, PROXY, drain_everything, read_invariant, settings_env
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def limited(settings: Settings) -> Iterator[Runtime]:
    """A drainer with the production abuse limits (1 per 60 s, 5 per 300 s per client)."""
    runtime = Runtime(settings.model_copy(update={"abuse_checks": True, "allowed_ips": "127.0.0.1"}))
    yield runtime
    runtime.drainer.store.close()
    runtime.engine.dispose()
    runtime.redis.close()


def post_from(app_settings: Settings, peer: str, petition_id: int, signers: list[tuple[str, str]]) -> None:
    """Each (email, X-Forwarded-For) signed through the app, the connection coming from `peer`."""
    with TestClient(create_app(app_settings), client=(peer, 40000)) as client:
        for email, forwarded in signers:
            headers = {"x-forwarded-for": forwarded} if forwarded else {}
            answer = client.post(
                f"/petitions/{petition_id}/signatures", json={"email": email, "name": "Ann"}, headers=headers
            )
            assert answer.status_code == 202, answer.text


def states(db: DB, petition_id: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT state, count(*) FROM signatures WHERE petition_id = %s AND receipt NOT LIKE 'starter-%%'"
        " GROUP BY state",
        [petition_id],
    )
    return {str(state): int(n) for state, n in rows}  # type: ignore[call-overload]


def test_a_forged_left_entry_behind_a_trusted_proxy_does_not_make_five_clients(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given an intake behind a trusted proxy, and one client at 203.0.113.7 that writes a new
    # address (and once the allow-listed 127.0.0.1) into the left of X-Forwarded-For each time
    petition = make_petition()
    forged = [(f"s{i}@example.org", f"10.{i}.0.1, 203.0.113.7") for i in range(4)]
    forged.append(("s4@example.org", "127.0.0.1, 203.0.113.7"))
    post_from(limited.settings.model_copy(update=BEHIND_PROXY), PROXY, petition.id, forged)

    # When the worker drains them
    drain_everything(limited)

    # Then they were one client: one counted, four over the burst limit
    assert states(db, petition.id) == {"validated": 1, "fraudulent": 4}
    assert read_invariant(db).counts_match


def test_the_header_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given a client connecting directly, writing five different addresses into the header
    petition = make_petition()
    signers = [(f"d{i}@example.org", f"198.51.100.{i}") for i in range(5)]
    post_from(limited.settings.model_copy(update=BEHIND_PROXY), "203.0.113.50", petition.id, signers)
    drain_everything(limited)
    # Then the limits saw its own address five times
    assert states(db, petition.id) == {"validated": 1, "fraudulent": 4}


def test_different_clients_behind_the_proxy_are_told_apart(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    signers = [(f"c{i}@example.org", f"203.0.113.{i}, 10.0.0.2") for i in range(5)]  # two proxies
    app_settings = limited.settings.model_copy(
        update={**BEHIND_PROXY, "trusted_proxies": f"{PROXY}, 10.0.0.0/24"}
    )
    post_from(app_settings, PROXY, petition.id, signers)
    drain_everything(limited)
    assert states(db, petition.id) == {"validated": 5}


def test_one_host_rotating_through_its_ipv6_64_is_one_client(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given five signatures, each from another address of 2001:db8:1:2::/64
    petition = make_petition()
    for i in range(5):
        post_from(limited.settings, f"2001:db8:1:2::{i + 1:x}", petition.id, [(f"v{i}@example.org", "")])
    # and one from the next /64, and one from an IPv4-mapped address
    post_from(limited.settings, "2001:db8:1:3::1", petition.id, [("w@example.org", "")])
    post_from(limited.settings, "::ffff:198.51.100.9", petition.id, [("x@example.org", "")])
    post_from(limited.settings, "198.51.100.9", petition.id, [("y@example.org", "")])

    drain_everything(limited)

    # Then the /64 is one client (one counted), the other /64 another, and the mapped address is
    # the same IPv4 client as 198.51.100.9
    assert states(db, petition.id) == {"validated": 3, "fraudulent": 5}


def test_an_ipv6_allow_list_entry_covers_its_64(
    settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    runtime = Runtime(settings.model_copy(update={"abuse_checks": True, "allowed_ips": "2001:db8:1:2::1"}))
    try:
        petition = make_petition()
        # Three signatures from another address of the allowed address's /64: none is limited
        post_from(
            runtime.settings, "2001:db8:1:2::7", petition.id, [(f"o{i}@example.org", "") for i in range(3)]
        )
        drain_everything(runtime)
    finally:
        runtime.drainer.store.close()
        runtime.engine.dispose()
        runtime.redis.close()
    assert states(db, petition.id) == {"validated": 3}


def test_a_forwarding_header_without_trusted_proxies_refuses_to_start(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES is empty"):
        Settings.from_env({"TRUSTED_PROXY_HEADER": "x-forwarded-for"})
    with pytest.raises(ValidationError, match="x-forwarded-for or forwarded"):
        Settings.from_env({"TRUSTED_PROXY_HEADER": "x-real-ip", "TRUSTED_PROXIES": "10.0.0.1"})
    assert Settings.from_env({"TRUSTED_PROXY_HEADER": "Forwarded", "TRUSTED_PROXIES": "10.0.0.1"})

    # And `sigingest api` says so in one line, without a traceback, and exits
    env = settings_env(settings, TRUSTED_PROXY_HEADER="x-forwarded-for", TRUSTED_PROXIES="")
    done = subprocess.run(
        [sys.executable, "-m", "worker.ops.cli", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "TRUSTED_PROXY_HEADER is set but TRUSTED_PROXIES is empty" in done.stderr
    assert "Traceback" not in done.stderr
