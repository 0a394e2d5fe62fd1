"""When an append counts as acknowledged, and whether that holds (pure: from INFO replies)."""

from __future__ import annotations

import pytest

from worker.drain.durability import AckPolicy, DurabilityUnsupported, fsync_policy, status

REPLICATION = {
    "role": "master",
    "master_repl_offset": 1000,
    "slave0": {"ip": "127.0.0.1", "port": 1, "state": "online", "offset": 900, "lag": 0},
}


def test_local_sends_nothing_after_the_appends() -> None:
    assert AckPolicy().command() is None


def test_replica_waits_for_that_many_replicas_for_at_most_the_timeout() -> None:
    policy = AckPolicy("replica", 2, 250)
    assert policy.command() == ("WAIT", 2, 250)
    assert policy.confirmed(2) and not policy.confirmed(1) and not policy.confirmed(ValueError())


def test_fsync_uses_waitaof_where_the_server_has_it() -> None:
    policy = fsync_policy(AckPolicy("fsync"), {"redis_version": "7.2.4"}, {"appendonly": "yes"})
    assert policy.command() == ("WAITAOF", 1, 0, 250)
    assert policy.confirmed([1, 0]) and not policy.confirmed([0, 0])


def test_fsync_on_an_older_server_needs_appendfsync_always() -> None:
    old = {"redis_version": "7.0.15"}
    assert (
        fsync_policy(AckPolicy("fsync"), old, {"appendonly": "yes", "appendfsync": "always"}).command()
        is None
    )
    with pytest.raises(DurabilityUnsupported, match="appendfsync always"):
        fsync_policy(AckPolicy("fsync"), old, {"appendonly": "yes", "appendfsync": "everysec"})
    with pytest.raises(DurabilityUnsupported, match="appendonly"):
        fsync_policy(AckPolicy("fsync"), {"redis_version": "7.4.0"}, {"appendonly": "no"})


def test_status_says_the_mode_holds_while_enough_replicas_keep_up() -> None:
    found = status(AckPolicy("replica", 1), REPLICATION, {})
    assert found["holds"] and found["replicas_connected"] == 1
    assert found["replica_lag_bytes"] == 100 and found["replica_lag_seconds"] == 0


def test_status_says_it_does_not_hold_with_a_replica_silent_for_seconds_or_too_few() -> None:
    silent = {**REPLICATION, "slave0": {**REPLICATION["slave0"], "lag": 5}}  # type: ignore[dict-item]
    assert status(AckPolicy("replica", 1), silent, {})["holds"] is False
    assert status(AckPolicy("replica", 2), REPLICATION, {})["holds"] is False
    assert status(AckPolicy("replica", 1), {"role": "master", "connected_slaves": 0}, {})["holds"] is False


def test_status_of_fsync_and_local() -> None:
    assert status(AckPolicy("fsync"), REPLICATION, {"appendonly": "yes", "appendfsync": "always"})["holds"]
    assert not status(AckPolicy("fsync"), REPLICATION, {"appendonly": "yes", "appendfsync": "everysec"})[
        "holds"
    ]
    assert status(AckPolicy(), {}, {}) == {
        "mode": "local",
        "replicas_connected": 0,
        "replica_lag_seconds": None,
        "replica_lag_bytes": None,
        "holds": True,
    }
