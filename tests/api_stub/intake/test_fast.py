"""The signing route's fast path (api_stub/intake/fast.py) answers exactly as the whole Starlette app
does: the same status, headers and body for every kind of request, the same /metrics figures,
the same 500 for an unexpected error; and only JSON posts to the signing route take it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from api_stub.app import create_app
from api_stub.intake.fast import FastSigning, IntakeApp
from tests.conftest import PetitionFactory
from worker.drain.registry import PetitionCard
from worker.observability import metrics as m
from worker.runtime import Runtime
from worker.settings import Settings

RECEIPT = re.compile(rb'"receipt":"[0-9a-f]{32}"')
ROUTE = "/petitions/{petition_id}/signatures"


def without_fast_path(settings: Settings) -> Starlette:
    app = create_app(settings)
    assert isinstance(app, IntakeApp)
    app.fast_path = None
    return app


@pytest.fixture
def both(settings: Settings) -> Iterator[dict[str, TestClient]]:
    with TestClient(create_app(settings)) as fast, TestClient(without_fast_path(settings)) as full:
        yield {"fast": fast, "full": full}


def requests(open_id: int, closed_id: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(method, path, body, headers): every answer the signing route gives, and its neighbours."""
    sign = f"/petitions/{open_id}/signatures"
    as_json = {"content-type": "application/json"}
    good = orjson.dumps({"email": "a@example.org", "name": "Ann"})
    return [
        ("POST", sign, good, as_json),
        ("POST", sign, good, {"content-type": "Application/JSON; charset=utf-8"}),
        ("POST", sign, good, {**as_json, "idempotency-key": "k-1"}),
        ("POST", sign, good, {**as_json, "idempotency-key": "k-1"}),
        ("POST", sign, b"{not json", as_json),
        ("POST", sign, b"[1, 2]", as_json),
        ("POST", sign, b'{"email": "a@example.org"}', as_json),
        ("POST", sign, orjson.dumps({"email": "a@example.org", "name": "x" * 9000}), as_json),
        ("POST", sign, good, {**as_json, "content-length": "50000000"}),
        ("POST", f"/petitions/{closed_id}/signatures", good, as_json),
        ("POST", "/petitions/424242/signatures", good, as_json),
        ("POST", "/petitions/abc/signatures", good, as_json),
        ("POST", "/petitions/0/signatures", good, as_json),
        ("POST", sign + "/", good, as_json),
        (
            "POST",
            sign,
            b"email=a%40example.org&name=Ann",
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        ("POST", sign, b"email=a@b.c", {"content-type": "text/plain"}),
        ("POST", sign, good, {}),
        ("GET", sign, b"", {}),
        ("PUT", sign, good, as_json),
    ]


def answer(client: TestClient, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    response = client.request(method, path, content=body, headers=headers, follow_redirects=False)
    return (
        response.status_code,
        sorted(response.headers.multi_items()),
        RECEIPT.sub(b"<receipt>", response.content),
    )


def request_figures(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
    """Every request-metric sample but the durations' sums and buckets (timing differs)."""
    names = (m.INTAKE_REQUESTS, m.INTAKE_REQUEST_BYTES, m.INTAKE_RESPONSE_BYTES, m.INTAKE_REQUEST_DURATION)
    return sorted(
        (s.name, sorted(s.labels.items()), s.value)
        for family in registry.collect()
        if family.name in names or f"{family.name}_total" in names
        for s in family.samples
        if not s.name.endswith(("_sum", "_bucket", "_created"))
    )


def test_every_answer_and_every_metric_is_the_same_with_and_without_the_fast_path(
    both: dict[str, TestClient], make_petition: PetitionFactory, rt: Runtime
) -> None:
    open_one, closed = make_petition(), make_petition()
    rt.registry.publish([PetitionCard(closed.id, closed.title, closed.starter_name, "closed", 1)])
    for method, path, body, headers in requests(open_one.id, closed.id):
        fast = answer(both["fast"], method, path, body, headers)
        full = answer(both["full"], method, path, body, headers)
        assert fast == full, (method, path, headers)
    registries = {name: c.app.state.metrics.registry for name, c in both.items()}  # type: ignore[attr-defined]
    assert request_figures(registries["fast"]) == request_figures(registries["full"])
    assert request_figures(registries["fast"])  # the comparison compared something


def test_an_unexpected_error_is_answered_500_counted_and_raised_on_both_paths(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    url = f"/petitions/{make_petition().id}/signatures"

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    for name, app in (("fast", create_app(settings)), ("full", without_fast_path(settings))):
        app.state.intake.queue.append = broken
        with TestClient(app) as raising, TestClient(app, raise_server_exceptions=False) as answering:
            with pytest.raises(RuntimeError, match="a bug"):
                raising.post(url, json={"email": "a@example.org", "name": "A"})
            response = answering.post(url, json={"email": "a@example.org", "name": "A"})
        assert (response.status_code, response.text) == (500, "Internal Server Error"), name
        assert response.headers["content-type"] == "text/plain; charset=utf-8", name
        registry = app.state.metrics.registry
        assert registry.get_sample_value(m.INTAKE_REQUESTS, {"route": ROUTE, "status": "500"}) == 2, name


def test_only_json_posts_to_the_signing_route_skip_starlettes_stack(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    app = create_app(settings)
    with TestClient(app) as client:
        client.get("/healthz")  # builds the stack
        stack = app.middleware_stack
        assert isinstance(stack, FastSigning)

        async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
            raise AssertionError(f"reached Starlette's stack: {scope['method']} {scope['path']}")

        stack.app = refuse
        url = f"/petitions/{petition.id}/signatures"
        assert client.post(url, json={"email": "a@example.org", "name": "Ann"}).status_code == 202
        with pytest.raises(AssertionError, match="reached Starlette's stack"):
            client.post(
                url,
                content=b"email=a%40example.org&name=Ann",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
