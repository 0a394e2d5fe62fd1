"""The intake's OpenAPI 3 document, served at `GET /openapi.json`.

Written by hand, beside the routes it describes, and checked against the running app by
Schemathesis (tests/api_stub/intake/test_openapi.py): every answer the intake gives must match it.
The limits come from the same settings the intake enforces.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.pipeline.fields import MAX_COUNTRY, MAX_EMAIL, MAX_IDEMPOTENCY_KEY, MAX_NAME, MAX_POSTCODE
from worker.settings import Settings

MAX_PETITION_ID = 2**63 - 1


def _error(*codes: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "enum": list(codes)},
            "detail": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def _answer(description: str, schema: dict[str, Any], retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
        }
    return answer


# What the intake's field checks accept (worker/pipeline/fields.py): no control characters; an
# email with exactly one @; a name with something besides white space. Limits apply after
# trimming white space, which a JSON schema cannot say, so the document is a little stricter.
PRINTABLE = "[^\\u0000-\\u001f\\u007f-\\u009f]"
NO_AT = "[^@\\u0000-\\u001f\\u007f-\\u009f]"
FORM_BOOLEAN = ["on", "true", "1", "yes", "off", "false", "0", "no", ""]


def _optional(limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit, "pattern": f"^{PRINTABLE}*$", "nullable": True}


def _fields(form: bool) -> dict[str, Any]:
    opt_in: dict[str, Any] = {"type": "string", "enum": FORM_BOOLEAN}
    if not form:
        opt_in = {"anyOf": [{"type": "boolean"}, opt_in], "nullable": True}
    extra: dict[str, Any] = {}
    if form:  # a form is flat: one string per field, each field once, at most 50 of them
        extra = {"additionalProperties": {"type": "string"}, "maxProperties": 50}
    return {
        "type": "object",
        "required": ["email", "name"],
        **extra,
        "properties": {
            "email": {"type": "string", "maxLength": MAX_EMAIL, "pattern": f"^{NO_AT}*@{NO_AT}*$"},
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_NAME,
                "pattern": f"^{PRINTABLE}*[^\\s\\u0000-\\u001f\\u007f-\\u009f]{PRINTABLE}*$",
            },
            "postcode": _optional(MAX_POSTCODE),
            "country": _optional(MAX_COUNTRY),
            "opt_in": opt_in,
            "idempotency_key": _optional(MAX_IDEMPOTENCY_KEY),
        },
    }


PETITION_ID = {
    "name": "petition_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PETITION_ID},
}
UNAVAILABLE = _answer(
    "Redis is unreachable, or too many signatures wait", _error("unavailable", "backlog_full"), True
)
NOT_FOUND = _answer(
    "no (open) petition with this id, or the id is not a positive 64-bit number", _error("petition_not_found")
)


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the intake's routes, with this deployment's body limit."""
    card = {
        "type": "object",
        "required": ["id", "slug", "title", "starter_name", "status", "signature_count", "call_to_action"],
        "properties": {
            "id": {"type": "integer"},
            "slug": {"type": "string"},
            "title": {"type": "string"},
            "starter_name": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "closed", "victory"]},
            "signature_count": {"type": "integer", "minimum": 0},
            "awaiting_confirmation": {
                "type": "integer",
                "minimum": 0,
                "description": "signatures stored awaiting email confirmation (not counted yet)",
            },
            "confirm_email": {"type": "boolean", "description": "signatures count once confirmed by email"},
            "target": {"type": "string", "nullable": True, "description": "the decision maker"},
            "call_to_action": {"type": "string"},
        },
    }
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    sign = {
        "summary": "Sign a petition",
        "description": f"The body is at most {settings.max_body_bytes} bytes and must arrive within "
        f"{settings.body_timeout_seconds:g} s. The signature is queued, not yet stored: the receipt "
        "names it in `signatures` or `rejected_signatures` once a worker has processed it.",
        "parameters": [
            PETITION_ID,
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {k: v for k, v in _optional(MAX_IDEMPOTENCY_KEY).items() if k != "nullable"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _fields(form=False)},
                "application/x-www-form-urlencoded": {"schema": _fields(form=True)},
            },
        },
        "responses": {
            "202": _answer(
                "queued; the same idempotency key with the same request gives the same receipt. "
                "`confirmation: email`: the petition counts the signature only once its signer "
                "follows the emailed link",
                {
                    "type": "object",
                    "required": ["receipt", "status"],
                    "properties": {
                        "receipt": {"type": "string"},
                        "status": {"type": "string", "enum": ["queued"]},
                        "confirmation": {"type": "string", "enum": ["email"]},
                    },
                },
            ),
            "400": _answer("not JSON, not a form, not an object, or not UTF-8", _error("malformed_body")),
            "404": NOT_FOUND,
            "408": _answer("the body did not arrive in time", _error("body_timeout")),
            "409": _answer("the petition is closed or a victory", _error("petition_closed")),
            "413": _answer("the body is over the limit", _error("body_too_large")),
            "415": _answer("neither JSON nor a form", _error("unsupported_media_type")),
            "422": _answer(
                "missing or wrong fields, each named in `fields`; or an idempotency key already used"
                " for a different signature (nothing queued)",
                _error("invalid_fields", "idempotency_key_reused"),
            ),
            "503": UNAVAILABLE,
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "signature-ingest intake", "version": "1"},
        "paths": {
            "/petitions/{petition_id}/signatures": {"post": sign},
            "/petitions/{petition_id}": {
                "get": {
                    "summary": "A petition's card and live count",
                    "parameters": [PETITION_ID],
                    "responses": {"200": _answer("the petition", card), "404": NOT_FOUND, "503": UNAVAILABLE},
                }
            },
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": _answer("alive", status)}}},
            "/readyz": {
                "get": {
                    "summary": "Redis reachable",
                    "responses": {"200": _answer("ready", status), "503": UNAVAILABLE},
                }
            },
        },
    }


def openapi_route(settings: Settings) -> Route:
    """`GET /openapi.json`, built once."""
    body = orjson.dumps(openapi_document(settings))

    async def serve(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", serve, methods=["GET"], include_in_schema=False)
