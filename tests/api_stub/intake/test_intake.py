"""The intake over HTTP (Starlette's test client, real Redis): every documented answer."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import backlog
from worker.drain.registry import PetitionCard
from worker.runtime import Runtime
from worker.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def petition(make_petition: PetitionFactory) -> PetitionCard:
    return make_petition()


def queued(rt: Runtime) -> int:
    return backlog(rt)[0]


def sign(client: TestClient, petition_id: object, **kwargs: object) -> object:
    return client.post(f"/petitions/{petition_id}/signatures", **kwargs)  # type: ignore[arg-type]


def test_a_json_signature_is_accepted_with_a_receipt(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = client.post(
        f"/petitions/{petition.id}/signatures", json={"email": "a@example.org", "name": "Ann"}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and len(body["receipt"]) == 32
    assert queued(rt) == 1


def test_a_form_post_is_accepted(client: TestClient, petition: PetitionCard, rt: Runtime) -> None:
    response = client.post(
        f"/petitions/{petition.id}/signatures",
        content="email=a%40example.org&name=Ann+Lee&opt_in=on&postcode=SW1A+1AA",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202, response.text
    assert queued(rt) == 1


def test_the_entry_carries_a_keyed_ip_hash_never_the_raw_ip(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    client.post(f"/petitions/{petition.id}/signatures", json={"email": "a@example.org", "name": "Ann"})
    [(_, [(_, fields)])] = rt.redis.xread(dict.fromkeys(rt.keys.streams(), "0"))
    entry = orjson.loads(fields[b"s"])
    assert len(entry["ip"]) == 32 and "testclient" not in fields[b"s"].decode()


def test_the_same_idempotency_key_gives_the_same_receipt_and_one_entry(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    url = f"/petitions/{petition.id}/signatures"
    first = client.post(
        url, json={"email": "a@example.org", "name": "Ann"}, headers={"Idempotency-Key": "k-1"}
    )
    again = client.post(
        url, json={"email": "a@example.org", "name": "Ann"}, headers={"Idempotency-Key": "k-1"}
    )
    in_body = client.post(url, json={"email": "a@example.org", "name": "Ann", "idempotency_key": "k-1"})
    assert first.status_code == again.status_code == in_body.status_code == 202
    assert first.json()["receipt"] == again.json()["receipt"] == in_body.json()["receipt"]
    assert queued(rt) == 1


def test_a_reused_idempotency_key_with_another_body_is_refused_and_queues_nothing(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    # Given a key that answered first@example.org
    url = f"/petitions/{petition.id}/signatures"
    key = {"Idempotency-Key": "k-shared"}
    first = client.post(url, json={"email": "first@example.org", "name": "Ann"}, headers=key)
    # When another signature comes with the same key
    second = client.post(url, json={"email": "second@example.org", "name": "Bob"}, headers=key)
    # Then it is refused with its reason, and only the first is queued
    assert first.status_code == 202
    assert second.status_code == 422 and second.json()["error"] == "idempotency_key_reused"
    assert queued(rt) == 1
    # And the same body as a form (same fields, other encoding) still gets the first receipt
    again = client.post(
        url, content=b"name=Ann&email=first%40example.org",
        headers={**key, "content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert again.status_code == 202 and again.json()["receipt"] == first.json()["receipt"]


def test_idempotency_keys_are_scoped_per_petition(
    client: TestClient, petition: PetitionCard, make_petition: PetitionFactory, rt: Runtime
) -> None:
    # Given the same key used on two petitions, each is its own request
    other = make_petition()
    body, key = {"email": "a@example.org", "name": "Ann"}, {"Idempotency-Key": "k-1"}
    here = client.post(f"/petitions/{petition.id}/signatures", json=body, headers=key)
    there = client.post(f"/petitions/{other.id}/signatures", json=body, headers=key)
    assert here.status_code == there.status_code == 202
    assert here.json()["receipt"] != there.json()["receipt"]
    assert queued(rt) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "malformed_body"),
        (b"[1, 2]", "application/json", 400, "malformed_body"),
        (b'"a string"', "application/json", 400, "malformed_body"),
        (b'{"name": "\\ud800", "email": "a@example.org"}', "application/json", 400, "malformed_body"),
        (b"\xff\xfe", "application/json", 400, "malformed_body"),
        (b"email=%FF&name=x", "application/x-www-form-urlencoded", 400, "malformed_body"),
        (b"justaword", "application/x-www-form-urlencoded", 400, "malformed_body"),
        (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
        (b"email=a@b.c", "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies_and_other_types_are_refused_and_nothing_is_queued(
    client: TestClient,
    petition: PetitionCard,
    rt: Runtime,
    body: bytes,
    content_type: str,
    status: int,
    error: str,
) -> None:
    response = client.post(
        f"/petitions/{petition.id}/signatures", content=body, headers={"content-type": content_type}
    )
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert queued(rt) == 0


@pytest.mark.parametrize(
    ("payload", "bad_fields"),
    [
        ({}, {"email", "name"}),
        ({"email": "a@example.org"}, {"name"}),
        ({"email": "a@example.org", "name": "   "}, {"name"}),
        ({"email": "a@example.org", "name": "x" * 201}, {"name"}),
        ({"email": "a" * 250 + "@x.org", "name": "Ann"}, {"email"}),
        ({"email": "no-at-sign", "name": "Ann"}, {"email"}),
        ({"email": "a@b@c.org", "name": "Ann"}, {"email"}),
        ({"email": 42, "name": ["Ann"]}, {"email", "name"}),
        ({"email": "a@example.org", "name": "Ann", "opt_in": "maybe"}, {"opt_in"}),
        ({"email": "a@example.org", "name": "Ann\x00Lee"}, {"name"}),
        ({"email": "a@example.org", "name": "Ann", "postcode": 12345}, {"postcode"}),
    ],
)
def test_missing_or_wrong_fields_get_422_naming_them(
    client: TestClient, petition: PetitionCard, rt: Runtime, payload: dict[str, object], bad_fields: set[str]
) -> None:
    response = client.post(f"/petitions/{petition.id}/signatures", json=payload)
    assert response.status_code == 422
    assert set(response.json()["fields"]) == bad_fields
    assert queued(rt) == 0


def test_a_name_of_exactly_200_characters_after_trimming_is_fine(
    client: TestClient, petition: PetitionCard
) -> None:
    response = client.post(
        f"/petitions/{petition.id}/signatures",
        json={"email": "a@example.org", "name": "  " + "é" * 200 + " "},
    )
    assert response.status_code == 202


def test_a_body_over_8_kib_gets_413(client: TestClient, petition: PetitionCard, rt: Runtime) -> None:
    body = orjson.dumps({"email": "a@example.org", "name": "Ann", "padding": "x" * 9000})
    response = client.post(
        f"/petitions/{petition.id}/signatures", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert queued(rt) == 0


@pytest.mark.parametrize(
    "petition_id", ["0", "-1", "abc", "1.5", "99999999999999999999999", "9223372036854775808", "%201"]
)
def test_petition_ids_that_are_not_positive_integers_get_404(client: TestClient, petition_id: str) -> None:
    response = client.post(
        f"/petitions/{petition_id}/signatures", json={"email": "a@example.org", "name": "Ann"}
    )
    assert response.status_code == 404


def test_an_unknown_petition_gets_404(client: TestClient, rt: Runtime) -> None:
    response = client.post("/petitions/424242/signatures", json={"email": "a@example.org", "name": "Ann"})
    assert (response.status_code, response.json()["error"]) == (404, "petition_not_found")
    assert queued(rt) == 0


@pytest.mark.parametrize("status", ["closed", "victory"])
def test_a_closed_or_victorious_petition_gets_409(
    client: TestClient, petition: PetitionCard, rt: Runtime, status: str
) -> None:
    from worker.drain.petitions import set_status

    set_status(rt.engine, rt.registry, petition.id, status)
    response = client.post(
        f"/petitions/{petition.id}/signatures", json={"email": "a@example.org", "name": "Ann"}
    )
    assert response.status_code == 409 and response.json() == {
        "error": "petition_closed",
        "detail": "this petition no longer takes signatures",
    }
    assert queued(rt) == 0


def test_redis_unreachable_gets_503_with_retry_after(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        response = client.post("/petitions/1/signatures", json={"email": "a@example.org", "name": "Ann"})
        ready = client.get("/readyz")
        health = client.get("/healthz")
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert ready.status_code == 503 and health.status_code == 200


def test_get_petition_shows_the_live_count_and_the_call_to_action(
    client: TestClient, petition: PetitionCard
) -> None:
    body = client.get(f"/petitions/{petition.id}").json()
    assert body["title"] == "Save the library" and body["starter_name"] == "Clara LONG"
    assert body["status"] == "open" and body["signature_count"] == 1
    assert body["call_to_action"] == "Be the first to join Clara today."


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["durability"]["mode"] == "local" and ready["durability"]["holds"] is True


def test_idempotency_keys_past_the_cap_are_not_remembered_and_signatures_still_queue(
    settings: Settings, petition: PetitionCard, rt: Runtime
) -> None:
    # Given an intake that remembers at most 3 idempotency keys per TTL period
    capped = settings.model_copy(update={"idempotency_max_keys": 3})
    url = f"/petitions/{petition.id}/signatures"
    with TestClient(create_app(capped)) as client:
        # When 5 signers each send their own key
        answers = [
            client.post(
                url, json={"email": f"s{n}@example.org", "name": "Ann"}, headers={"Idempotency-Key": f"k{n}"}
            )
            for n in range(5)
        ]
    # Then every signature is queued, and only 3 keys take room in Redis
    assert [a.status_code for a in answers] == [202] * 5
    assert queued(rt) == 5
    assert len(list(rt.redis.scan_iter(match=f"{settings.key_prefix}idem:*"))) == 3
