"""Slow clients and oversized bodies, over real sockets against the real server (Granian, as
`sigingest api` runs it): a body that never finishes is cut off after `BODY_TIMEOUT_SECONDS`
(408), a body over `MAX_BODY_BYTES` is cut off without being read to its end (413), and neither
ties the server up: a normal request is answered while they hang.
"""

from __future__ import annotations

import select
import socket
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.harness import free_port
from tests.helpers import Child, healthy, settings_env, stop_process, wait_for
from worker.drain.registry import PetitionCard
from worker.runtime import Runtime
from worker.settings import Settings

BODY_TIMEOUT = 2.0
LIMIT = 8192


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[tuple[int, int]]:
    """One Granian for the module, on its own key prefix with one open petition in the registry
    (the intake reads only Redis). Yields (port, petition id)."""
    port = free_port()
    s = Settings.from_env(
        {},
        redis_url=redis_url,
        key_prefix=f"t{uuid.uuid4().hex[:10]}:",
        body_timeout_seconds=BODY_TIMEOUT,
        max_body_bytes=LIMIT,
    )
    rt = Runtime(s)
    rt.registry.publish([PetitionCard(1, "Slow clients", "Clara LONG", "open", 1)])
    proc = Child(
        [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--no-ws"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"),
            "api_stub.app:create_app",
        ],
        env=settings_env(s),
    )

    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), timeout=20, interval=0.1)
        yield port, 1
    finally:
        stop_process(proc, timeout=10)
        keys = list(rt.redis.scan_iter(match=f"{s.key_prefix}*"))
        if keys:
            rt.redis.delete(*keys)
        rt.redis.close()


def open_request(server: tuple[int, int], headers: str) -> socket.socket:
    port, petition_id = server
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(15)  # a guard against a hang, not a measurement
    head = f"POST /petitions/{petition_id}/signatures HTTP/1.1\r\nHost: x\r\n"
    conn.sendall(f"{head}Content-Type: application/json\r\n{headers}\r\n".encode())
    return conn


def status_of(conn: socket.socket) -> int:
    reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return int(reply.split(b" ", 2)[1])


def readable(conn: socket.socket) -> bool:
    return bool(select.select([conn], [], [], 0)[0])


def test_a_body_that_never_finishes_is_cut_off_with_408(server: tuple[int, int]) -> None:
    conn = open_request(server, "Content-Length: 1000\r\n")
    conn.sendall(b'{"email": "a@exa')  # ... and nothing more, ever
    assert status_of(conn) == 408
    conn.close()


def test_a_body_trickling_in_forever_is_cut_off_too(server: tuple[int, int]) -> None:
    conn = open_request(server, "Transfer-Encoding: chunked\r\n")
    sent = 0
    while not readable(conn) and sent < 200:  # 200 chunks would take 20 s, 10 times the limit
        conn.sendall(b"1\r\n \r\n")  # one byte every 0.1 s: never idle, never done
        sent += 1
        time.sleep(0.1)
    assert sent < 200 and status_of(conn) == 408
    conn.close()


def test_a_declared_oversized_body_is_refused_without_reading_it(server: tuple[int, int]) -> None:
    conn = open_request(server, "Content-Length: 50000000\r\n")
    assert status_of(conn) == 413  # answered before a single byte of the body was sent
    conn.close()


def test_an_undeclared_oversized_body_is_cut_off_soon_after_the_limit(server: tuple[int, int]) -> None:
    conn = open_request(server, "Transfer-Encoding: chunked\r\n")
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    sent = 0
    try:
        while not readable(conn) and sent < 4 * 1024 * 1024:
            conn.sendall(chunk)
            sent += 1024
            time.sleep(0.002)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection on us: also a cut-off
    assert LIMIT < sent < 1024 * 1024, f"{sent} bytes sent before the answer"
    assert status_of(conn) == 413
    conn.close()


def test_hanging_clients_do_not_tie_up_the_server(server: tuple[int, int]) -> None:
    hanging = [open_request(server, "Content-Length: 1000\r\n") for _ in range(30)]
    for conn in hanging:
        conn.sendall(b"{")
    port, petition_id = server
    response = httpx.post(
        f"http://127.0.0.1:{port}/petitions/{petition_id}/signatures",
        json={"email": "a@example.org", "name": "Ann"},
        timeout=15,
    )
    assert response.status_code == 202
    # it was answered while all thirty were still waiting for their time limit
    assert not any(readable(c) for c in hanging)
    assert [status_of(c) for c in hanging] == [408] * 30
    for conn in hanging:
        conn.close()
