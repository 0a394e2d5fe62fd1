"""`METRICS_TOKEN`: the intake's `/metrics` answers only a bearer of the token."""

from __future__ import annotations

from starlette.testclient import TestClient

from api_stub.app import create_app
from worker.settings import Settings


def test_metrics_need_the_bearer_token_when_one_is_set(settings: Settings) -> None:
    closed = settings.model_copy(update={"metrics_token": "s3cret-token"})
    with TestClient(create_app(closed)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert missing.status_code == wrong.status_code == 401
    assert b"sigingest" not in missing.content + wrong.content
    assert right.status_code == 200 and b"sigingest_queue_up" in right.content


def test_metrics_are_open_without_a_token(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 200
