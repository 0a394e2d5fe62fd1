"""How every process connects to Redis: straight to REDIS_URL, or to the primary the Sentinels
name (REDIS_SENTINELS), following a failover on its own.

With Sentinels a connection asks them for the primary each time it connects; a connection
error or a READONLY reply (a demoted primary) drops it, so the next command finds the new one.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import parse_url
from redis.sentinel import Sentinel

from worker.settings import Settings

# The intake retries only a failed connect (nothing reached Redis) and idempotent reads; an
# append is sent once whatever this says (`SharedRoundTrips._evalsha` in api_stub/intake/queue.py):
# a lost reply may follow an append that ran.
CONNECT_RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2)
# A Sentinel that does not answer this fast is skipped for the next one.
_SENTINEL_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def redis_client(settings: Settings, *, connect_timeout: float = 2, timeout: float = 10) -> redis.Redis:
    """The worker-side client (drainers, watchdog, beat, reminders, CLI): its database number
    honoured, failing fast when Redis is gone."""
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        "health_check_interval": 30,
    }
    if not settings.sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    where = _url_options(settings)
    sentinel = Sentinel(settings.sentinels, sentinel_kwargs=_SENTINEL_OPTIONS, **where)  # type: ignore[no-untyped-call]
    master = sentinel.master_for(settings.redis_sentinel_master, **options)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, master)


def async_redis_client(
    settings: Settings, *, connect_timeout: float = 1, timeout: float = 5, max_connections: int = 256
) -> aioredis.Redis:
    """The intake's client, the same choice as `redis_client` on asyncio."""
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        "max_connections": max_connections,
        "retry": CONNECT_RETRY,
    }
    if not settings.sentinels:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    where = _url_options(settings)
    sentinel = AsyncSentinel(settings.sentinels, sentinel_kwargs=_SENTINEL_OPTIONS, **where)  # type: ignore[no-untyped-call]
    return cast(aioredis.Redis, sentinel.master_for(settings.redis_sentinel_master, **options))


def _url_options(settings: Settings) -> dict[str, Any]:
    """REDIS_URL's database, user and password (its host and port are the Sentinels' to say)."""
    parsed: dict[str, Any] = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    return {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}
