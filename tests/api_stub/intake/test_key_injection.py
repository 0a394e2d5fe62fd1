"""Redis key injection: petition ids and fields never become part of a key name or of Lua text.

Run against a Redis of the test's own, so every key in it can be accounted for: after hostile
submissions the only keys are the documented ones (keys.py), and each accepted payload is stored
byte for byte as data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.faults.harness import PrivateRedis
from worker.runtime import Runtime
from worker.settings import Settings

HOSTILE = [
    "1*",
    "*",
    "{x}",
    "{1}",
    "1\n",
    "1\r\nFLUSHALL\r\n",
    "1' .. redis.call('FLUSHALL') .. '",
    '1"]] redis.call("FLUSHALL") --[[',
    "1 OR 1",
    "1:2",
    "1?",
    "[1]",
    "1\\",
    "\x00",
    "%",
    "١",
]


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    return private_redis.url


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def all_keys(rt: Runtime) -> set[str]:
    return {k.decode() for k in rt.redis.scan_iter(count=1000)}


def cached_scripts(rt: Runtime) -> int:
    info: Any = rt.redis.info("memory")
    return int(info["number_of_cached_scripts"])


def allowed(key: str, prefix: str, petition_id: int) -> bool:
    names = (
        rf"stream:\d+|petition:{petition_id}|petitions|totals"
        rf"|idem:{petition_id}:[0-9a-f]{{32}}|idem-count:\d+|drainer:.*"
    )
    return re.fullmatch(rf"{re.escape(prefix)}(?:{names})", key) is not None


def test_hostile_petition_ids_are_refused_before_redis_sees_them(
    client: TestClient, rt: Runtime, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    before = all_keys(rt)
    for raw in HOSTILE:
        signed = client.post(
            f"/petitions/{quote(raw, safe='')}/signatures", json={"email": "a@example.org", "name": "Ann"}
        )
        shown = client.get(f"/petitions/{quote(raw, safe='')}")
        assert (signed.status_code, shown.status_code) == (404, 404), raw
    assert all_keys(rt) == before
    assert rt.redis.hget(rt.keys.petition(petition.id), "status") == b"open"


def test_hostile_fields_and_idempotency_keys_are_stored_as_data_never_as_names(
    client: TestClient, rt: Runtime, make_petition: PetitionFactory, settings: Settings
) -> None:
    petition = make_petition()
    client.post(f"/petitions/{petition.id}/signatures", json={"email": "w@example.org", "name": "Warm"})
    scripts = cached_scripts(rt)  # the append script, loaded once
    sent = []
    for n, text in enumerate(h for h in HOSTILE if h.isprintable()):
        fields = {
            "email": f"{text.strip()}{n}@example.org",
            "name": f"{text} name",
            "postcode": text[:16],
            "country": f"{text}"[:64],
        }
        key = {b"idempotency-key": f"{text}-{n}".encode()}
        response = client.post(f"/petitions/{petition.id}/signatures", json=fields, headers=key)
        assert response.status_code == 202, response.text
        sent.append((response.json()["receipt"], fields))
        again = client.post(f"/petitions/{petition.id}/signatures", json=fields, headers=key)
        assert again.json()["receipt"] == response.json()["receipt"]
    before = all_keys(rt)
    for text in (h for h in HOSTILE if not h.isprintable()):  # control characters: refused
        fields = {"email": f"a{text}@example.org", "name": text, "idempotency_key": text}
        assert client.post(f"/petitions/{petition.id}/signatures", json=fields).status_code == 422
    keys = all_keys(rt)
    assert keys == before
    # Request data interpolated into Lua text would have made a new script per submission
    assert cached_scripts(rt) == scripts
    assert all(allowed(k, settings.key_prefix, petition.id) for k in keys), sorted(keys)
    assert len([k for k in keys if ":idem:" in k]) == len(sent)
    stored = {}
    for stream in rt.keys.streams():
        entries: Any = rt.redis.xrange(stream) if rt.redis.exists(stream) else []
        for _, entry in entries:
            body = orjson.loads(entry[b"s"])
            stored[body["r"]] = body["f"]
    assert len(stored) == len(sent) + 1
    for receipt, fields in sent:
        assert {k: stored[receipt][k] for k in fields} == {k: v.strip() for k, v in fields.items()}
    assert rt.redis.hget(rt.keys.petition(petition.id), "status") == b"open"
    assert rt.redis.ping()  # still answering
