"""How every worker-side process connects to Redis."""

from __future__ import annotations

import redis


def redis_client(url: str) -> redis.Redis:
    """A client for `url` (its database number honoured) that fails fast when Redis is gone."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
