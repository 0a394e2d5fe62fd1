"""Property tests of the intake's parsing: whatever arrives, the answer is one of the documented
status codes, never a 500, and anything accepted satisfies the field rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api_stub.app import create_app
from api_stub.intake.parse import MAX_PETITION_ID, IntakeError, parse_petition_id, parse_submission
from tests.conftest import PetitionFactory
from worker.pipeline.fields import MAX_EMAIL, MAX_NAME, SignatureFields, unprintable
from worker.settings import Settings

DOCUMENTED = {202, 400, 404, 408, 409, 413, 415, 422, 503}
FIELDS = ["email", "name", "postcode", "country", "opt_in", "idempotency_key"]
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/JSON; charset=utf-8",
        "text/plain",
        "",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Every field gets arbitrary text (any code point, surrogates aside), or something that is
# not text at all, or is left out.
field_values = st.one_of(st.text(), st.text(max_size=300), json_values)
submissions = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, field_values))
petition_ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(min_size=1, max_size=30),
    st.sampled_from(
        ["1", "01", "+1", " 1", "1e3", "١", "9223372036854775807", "9223372036854775808", ".", ".."]
    ),
)


def accepted_fields_obey_the_rules(fields: SignatureFields) -> None:
    assert fields.email.count("@") == 1 and len(fields.email) <= MAX_EMAIL
    assert 0 < len(fields.name) <= MAX_NAME and fields.name == fields.name.strip()
    for text in (fields.email, fields.name, fields.postcode, fields.country, fields.idempotency_key):
        assert text is None or not unprintable(text)


def parse(content_type: str | None, body: bytes, key: str | None = None) -> int:
    """The status the intake would answer with (202 for parsed fields)."""
    try:
        fields = parse_submission(content_type, body, key)
    except IntakeError as exc:
        return exc.status
    accepted_fields_obey_the_rules(fields)
    return 202


@given(content_type=st.none() | st.text(max_size=40) | CONTENT_TYPES, body=st.binary(max_size=600))
def test_arbitrary_bytes_get_a_documented_answer(content_type: str | None, body: bytes) -> None:
    assert parse(content_type, body) in {202, 400, 415, 422}


@given(body=json_values)
def test_arbitrary_json_gets_400_or_422_unless_it_is_a_valid_submission(body: Any) -> None:
    status = parse("application/json", json.dumps(body).encode())
    assert status in ({202, 400, 422} if isinstance(body, dict) else {400})


@given(data=submissions, header_key=st.none() | st.text(max_size=250))
def test_arbitrary_unicode_in_every_field_is_accepted_only_when_it_obeys_the_rules(
    data: dict[str, object], header_key: str | None
) -> None:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert parse("application/json", body, header_key) in {202, 400, 422}
    if all(isinstance(v, str) for v in data.values()):
        form = urlencode({k: str(v).encode("utf-8", "surrogatepass") for k, v in data.items()}).encode()
        assert parse("application/x-www-form-urlencoded", form, header_key) in {202, 400, 422}


@given(raw=petition_ids)
def test_petition_ids_are_positive_64_bit_integers_or_404(raw: str) -> None:
    try:
        parsed = parse_petition_id(raw)
    except IntakeError as exc:
        assert exc.status == 404
    else:
        assert 0 < parsed <= MAX_PETITION_ID and str(parsed) == raw


# --- the same through the app, with real Redis ------------------------------------------------


@pytest.fixture
def client(settings: Settings, make_petition: PetitionFactory) -> Iterator[TestClient]:
    make_petition()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def in_path(raw: str) -> str:
    """`raw` as one path segment; dots too, or the client would resolve "." and ".." away."""
    return quote(raw, safe="").replace(".", "%2E")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    petition=petition_ids | st.just("1"),
    content_type=CONTENT_TYPES,
    body=st.binary(max_size=300) | submissions.map(lambda d: json.dumps(d).encode()),
    header_key=st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
def test_the_app_never_answers_500_to_anything(
    client: TestClient, petition: str, content_type: str, body: bytes, header_key: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if header_key is not None:
        headers["idempotency-key"] = header_key
    path = f"/petitions/{in_path(petition)}"
    response = client.post(f"{path}/signatures", content=body, headers=headers)
    assert response.status_code in DOCUMENTED, response.text
    if response.headers.get("content-type") == "application/json":  # (not Starlette's plain 404)
        assert set(response.json()) & {"error", "receipt"}
    got = client.get(path)
    assert got.status_code in {200, 404}
