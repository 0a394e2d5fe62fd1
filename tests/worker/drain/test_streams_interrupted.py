"""Streams interrupted under a drainer (a blocked read the server ends with UNBLOCKED, as a
failover's demotion does; streams gone, as after a restart or on a demoted primary that
resyncs) mean "retry later", not an error that ends the drain task and leaves its slot idle
until the watchdog notices."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from worker.drain.streams import SignatureStreams
from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime


def test_a_blocked_read_ended_by_the_server_becomes_queue_unavailable(redis_url: str, keys: Keys) -> None:
    # Given a drainer's read blocked on empty streams
    client = redis.Redis.from_url(redis_url)
    streams = SignatureStreams(client, keys)
    streams.ensure_groups()
    raised: list[BaseException] = []
    connection_id: list[int] = []

    def read() -> None:
        connection_id.append(int(streams._raw.client_id()))  # the connection the read then uses
        try:
            streams.read("c1", 10, block_ms=10_000)
        except BaseException as exc:
            raised.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    admin = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 5
    while not connection_id or not any(
        c["cmd"] == "xreadgroup" and int(c["id"]) == connection_id[0] for c in admin.client_list()
    ):
        assert time.monotonic() < deadline, "the read never blocked"
        time.sleep(0.01)
    # When the server ends it with an error, as a demotion does
    assert admin.client_unblock(connection_id[0], error=True)
    reader.join(5)
    # Then the drainer sees "retry later"
    assert len(raised) == 1
    with pytest.raises(QueueUnavailable, match="UNBLOCKED"):
        raise raised[0]
    client.close()
    admin.close()


def test_streams_gone_from_under_a_drainer_are_made_again_and_it_drains_on(rt: Runtime) -> None:
    # Given a drainer that has read from its streams once
    drainer = rt.drainer
    drainer.run_until(time.monotonic() + 0.2)
    # When the streams and their group vanish (Redis restarted empty, or the drainer's connection
    # still reads from a demoted primary while it resyncs) and a signature arrives after
    rt.redis.delete(*rt.keys.streams())
    drainer._next_claim = 0.0  # a claim is due: XPENDING meets the missing group first
    payload = encode("r1", 1, 1_790_000_000_000, None, SignatureFields("a@example.org", "A"))
    # Then the drainer backs off instead of failing, makes the group again and reads on
    drainer.run_until(time.monotonic() + 0.2)
    rt.redis.xadd(rt.keys.stream(0), {"s": payload})
    drainer.run_until(time.monotonic() + 3.0)
    assert rt.redis.xinfo_groups(rt.keys.stream(0))[0]["pending"] == 0
    assert rt.redis.xinfo_groups(rt.keys.stream(0))[0]["entries-read"] == 1
