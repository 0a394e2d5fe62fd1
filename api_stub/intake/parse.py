"""Parse a signature submission and do the cheap checks. Pure: no I/O.

Every failure is an `IntakeError` carrying the status code and the JSON body to answer with;
nothing is enqueued for any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson

from worker.pipeline.fields import InvalidFields, SignatureFields, parse_fields

PETITION_ID = re.compile(r"[1-9][0-9]{0,18}")
MAX_PETITION_ID = 2**63 - 1
JSON_TYPES = frozenset({"application/json"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded"})


@dataclass
class IntakeError(Exception):
    status: int
    error: str
    detail: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None  # seconds, for a 503 the client should retry

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.error}
        if self.detail:
            body["detail"] = self.detail
        if self.fields:
            body["fields"] = self.fields
        return body


def parse_petition_id(raw: str) -> int:
    """A positive 64-bit id, or 404 (the path is not a petition)."""
    if PETITION_ID.fullmatch(raw) and int(raw) <= MAX_PETITION_ID:
        return int(raw)
    raise IntakeError(404, "petition_not_found", "petition ids are positive integers")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_submission(content_type: str | None, body: bytes, header_key: str | None) -> SignatureFields:
    """The body as checked fields. Raises `IntakeError` (400, 415 or 422)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        data = _json_object(body)
    elif kind in FORM_TYPES:
        data = _form_object(body)
    else:
        raise IntakeError(
            415, "unsupported_media_type", "send application/json or application/x-www-form-urlencoded"
        )
    if header_key is not None:
        data["idempotency_key"] = header_key
    try:
        return parse_fields(data)
    except InvalidFields as exc:
        raise IntakeError(
            422, "invalid_fields", "some fields are missing or wrong", fields=exc.errors
        ) from None


def _json_object(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IntakeError(400, "malformed_body", f"not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise IntakeError(400, "malformed_body", "the body must be a JSON object")
    return data


def _form_object(body: bytes) -> dict[str, object]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=50,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeError(400, "malformed_body", f"not a valid form: {type(exc).__name__}") from None
    data: dict[str, object] = {}
    for key, value in pairs:
        if key in data:
            raise IntakeError(400, "malformed_body", f"field {key[:40]!r} appears twice")
        data[key] = value
    return data
