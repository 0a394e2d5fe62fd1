"""Smoke test of the embedded servers (`make run`'s and the tests' fallback), even where system
servers exist: start them, migrate, sign through the intake, drain, restart, find the data."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.helpers import drain_everything
from tests.servers import embedded_postgres, embedded_redis, scratch_dir
from worker.db.migrate import upgrade
from worker.drain.petitions import create_petition
from worker.runtime import Runtime
from worker.settings import Settings


def signatures(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.canonical_email, p.signature_count FROM signatures s JOIN petitions p"
            " ON p.id = s.petition_id WHERE s.receipt NOT LIKE 'starter-%%'"
        ).fetchall()
    return [(str(email), int(count)) for email, count in rows]


def test_embedded_servers_take_a_signature_end_to_end_and_keep_it_across_a_restart() -> None:
    with scratch_dir("sigsmoke-") as root:
        # Given durable embedded servers, as `sigingest up` runs them
        with embedded_redis(root, durable=True) as red, embedded_postgres(root, durable=True) as pg:
            settings = Settings.from_env({}, redis_url=red.url, database_url=pg.url, block_ms=20)
            upgrade(settings.sqlalchemy_url)
            rt = Runtime(settings)
            petition = create_petition(rt.engine, rt.registry, title="Smoke", starter_name="Clara LONG")
            # When one signature goes through the intake app and the drainer
            with TestClient(create_app(settings)) as client:
                answer = client.post(
                    f"/petitions/{petition.id}/signatures", json={"email": "Ann@Example.org", "name": "Ann"}
                )
                assert answer.status_code == 202
                drain_everything(rt)
                assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == 2
            rt.drainer.store.close()
            rt.engine.dispose()
            rt.redis.close()
            # Then PostgreSQL has the row and the count
            assert signatures(pg.url) == [("ann@example.org", 2)]
        assert not red.running() and not pg.running()
        # And after a restart on the same directories, both servers still have it
        with embedded_redis(root, durable=True) as red, embedded_postgres(root, durable=True) as pg:
            assert signatures(pg.url) == [("ann@example.org", 2)]
            settings = Settings.from_env({}, redis_url=red.url, database_url=pg.url)
            with TestClient(create_app(settings)) as client:
                assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == 2
