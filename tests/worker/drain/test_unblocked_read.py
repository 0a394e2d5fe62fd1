"""A blocked stream read that the server ends (a failover demoting the primary unblocks every
blocked client with an UNBLOCKED error) means "retry later", not an error that ends the drain
task and leaves its slot idle until the watchdog notices."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from worker.drain.streams import SignatureStreams
from worker.errors import QueueUnavailable
from worker.keys import Keys


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
