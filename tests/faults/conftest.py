"""Fixtures for fault tests: a private Redis a test may kill, and unfinished-entry bookkeeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()
