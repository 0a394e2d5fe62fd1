"""Schemathesis against the intake's own OpenAPI document (served at /openapi.json): for
generated requests, valid and invalid, the intake never answers 500 and every answer matches
the document (status, headers, body schema).

Schemathesis's pytest plugin does not load under this pytest, so its Python API is driven from
a plain test: one Hypothesis run per operation and generation mode, with bounded examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from api_stub.app import create_app
from api_stub.intake.openapi import openapi_document
from tests.conftest import PetitionFactory
from worker.drain.petitions import set_status
from worker.runtime import Runtime
from worker.settings import Settings

DOCUMENT = openapi_document(Settings.from_env({}))
# (path, method, mode): invalid requests can only be generated where there is input to spoil.
RUNS = [
    (path, method, mode)
    for path, methods in DOCUMENT["paths"].items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or spec.get("parameters") or spec.get("requestBody")
]


@pytest.fixture
def intake_schema(settings: Settings, rt: Runtime, make_petition: PetitionFactory) -> Iterator[Any]:
    # Petition 1 is open and 2 is closed (ids start at 1 in each test's fresh database), so
    # generated ids reach the 202 and 409 answers as well as 404.
    make_petition(title="Open")
    set_status(rt.engine, rt.registry, make_petition(title="Closed").id, "closed")
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


@pytest.mark.parametrize(
    ("path", "method", "mode"), RUNS, ids=[f"{m.upper()} {p} {g.value}" for p, m, g in RUNS]
)
def test_the_intake_answers_generated_requests_as_its_openapi_document_says(
    intake_schema: Any, rt: Runtime, path: str, method: str, mode: GenerationMode
) -> None:
    operation = intake_schema[path][method]

    def forget_idempotency_keys() -> None:
        # Each example is one independent request: a key generated twice with two bodies would
        # rightly get 422 idempotency_key_reused, a sequence this test does not model
        # (tests/api_stub/intake/test_intake.py covers it).
        for key in rt.redis.scan_iter(match=f"{rt.keys.prefix}idem*"):
            rt.redis.delete(key)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        # Every response check runs (no 500; status, headers, body as documented) and valid
        # requests must be accepted. Not "every schema-invalid request is refused": the intake
        # trims white space before its length and character checks (" \x1fAnn" is the name
        # "Ann"), which a JSON schema cannot say, so some invalid-looking requests are fine.
        forget_idempotency_keys()
        case.call_and_validate(excluded_checks=[negative_data_rejection])

    check()


def test_the_document_is_served_and_names_every_route(settings: Settings) -> None:
    from starlette.testclient import TestClient

    with TestClient(create_app(settings)) as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == openapi_document(settings)
    # Every JSON API route; pages for browsers and mail clients, static files and /metrics are
    # marked include_in_schema=False (Starlette's flag for routes outside the API document).
    app_routes = create_app(settings).routes
    routes = {r.path for r in app_routes if getattr(r, "include_in_schema", True)}  # type: ignore[attr-defined]
    assert routes == set(served.json()["paths"])
