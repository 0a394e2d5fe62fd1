"""The demo's lean HTTP client reads what our intake (and a proxy in front of it) can send."""

from __future__ import annotations

import asyncio

import pytest

from worker.ops.demo.http import Answer, ProtocolError, Target, read_answer


def read(raw: bytes) -> Answer:
    async def go() -> Answer:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_answer(reader)

    return asyncio.run(go())


def test_an_answer_with_content_length_is_read_exactly() -> None:
    answer = read(b'HTTP/1.1 202 Accepted\r\ncontent-length: 9\r\nRetry-After: 1\r\n\r\n{"a": 12}trailing')
    assert (answer.status, answer.body, answer.headers["retry-after"]) == (202, b'{"a": 12}', "1")


def test_a_chunked_answer_is_joined() -> None:
    head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = read(head + b"4\r\nback\r\n3;x=y\r\nlog\r\n0\r\n\r\n")
    assert (answer.status, answer.body) == (503, b"backlog")


@pytest.mark.parametrize(
    "raw",
    [b"", b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody"],
    ids=["closed", "not http", "no length"],
)
def test_anything_else_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(raw)


def test_only_plain_http_targets_are_accepted() -> None:
    assert Target.parse("http://127.0.0.1:8000") == Target("127.0.0.1", 8000, "127.0.0.1:8000")
    with pytest.raises(ValueError, match="plain http"):
        Target.parse("https://example.org")
