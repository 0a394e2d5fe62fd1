"""The JSON intake's handlers: sign, petition, health and readiness, and the one place that
turns `IntakeError` and `QueueUnavailable` into HTTP answers. The page and form (`api_stub/pages/`)
reuse `Intake.enqueue` and `answering_errors`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import lru_cache

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api_stub.intake.parse import IntakeError, parse_petition_id, parse_submission
from api_stub.intake.queue import Appended, IntakeQueue
from worker.errors import QueueUnavailable
from worker.pipeline.client_address import client_address, client_key, parse_networks
from worker.pipeline.fields import SignatureFields
from worker.pipeline.iphash import hash_ip
from worker.pipeline.wording import call_to_action
from worker.settings import Settings

MAX_CACHED_INPUT = 256  # characters of peer and forwarding header for a cached client hash
RETRY_AFTER_DOWN = "1"
RETRY_AFTER_FULL = "5"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class Intake:
    """The handlers, holding what they need: settings, the queue, the IP-hash key."""

    def __init__(self, settings: Settings, queue: IntakeQueue) -> None:
        self.settings = settings
        self.queue = queue
        self._ip_key = settings.ip_hash_secret.encode()
        self._proxies = parse_networks(settings.trusted_proxies, "TRUSTED_PROXIES")
        self._header = settings.forwarding_header if self._proxies else ""
        # Clients repeat (a spike is many posts per address): parsing and hashing each address
        # once per process keeps the cost off the hot path. Only short inputs are cached, so
        # hostile headers cannot grow it past a few MB.
        self._hash_cached = lru_cache(maxsize=65_536)(self._hash_of)

    def ip_hash(self, request: Request) -> str | None:
        """A keyed hash of the client's key (`client_address`: behind trusted proxies only;
        an IPv6 client as its prefix); the raw address goes no further than here."""
        peer = request.client.host if request.client else None
        values = tuple(request.headers.getlist(self._header)) if self._header else ()
        if peer is not None and len(peer) + sum(map(len, values)) <= MAX_CACHED_INPUT:
            return self._hash_cached(peer, values)
        return self._hash_of(peer, values)

    def _hash_of(self, peer: str | None, values: tuple[str, ...]) -> str | None:
        address = client_address(peer, self._header, values, self._proxies)
        if not address:
            return None
        return hash_ip(self._ip_key, client_key(address, self.settings.ipv6_prefix_length))

    async def read_body(self, request: Request) -> bytes:
        """The body, refused past `MAX_BODY_BYTES` (413) or after `BODY_TIMEOUT_SECONDS` (408)."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise IntakeError(413, "body_too_large", f"the body must be at most {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise IntakeError(413, "body_too_large", f"the body must be at most {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise IntakeError(408, "body_timeout", "the body took too long to arrive") from None
        return b"".join(chunks)

    async def sign(self, request: Request) -> Response:
        petition_id = parse_petition_id(request.path_params["petition_id"])
        body = await self.read_body(request)
        fields = parse_submission(
            request.headers.get("content-type"), body, request.headers.get("idempotency-key")
        )
        appended = await self.enqueue(request, petition_id, fields)
        return json_response(accepted_body(appended), 202)

    async def enqueue(
        self, request: Request, petition_id: int, fields: SignatureFields, *, honeypot: bool = False
    ) -> Appended:
        """Append checked fields to the stream; returns the outcome with the receipt (a prior one
        for a repeated idempotency key and the same request) and the petition's confirmation mode.
        Raises `IntakeError` (404, 409, 422 key reused with another request, 503 backlog full) or
        `QueueUnavailable`; the JSON intake and the browser form share it."""
        appended = await self.queue.append(
            petition_id,
            fields,
            uuid.uuid4().hex,
            time.time_ns() // 1_000_000,
            self.ip_hash(request),
            honeypot=honeypot,
        )
        if appended.status == "ok" and appended.receipt:
            return appended
        if appended.status == "closed":
            raise IntakeError(409, "petition_closed", "this petition no longer takes signatures")
        if appended.status == "reused":
            raise IntakeError(
                422, "idempotency_key_reused",
                "this idempotency key was used for a different signature; use a new key",
            )  # fmt: skip
        if appended.status == "full":
            raise IntakeError(
                503, "backlog_full", "too many signatures waiting; try again shortly",
                retry_after=RETRY_AFTER_FULL,
            )  # fmt: skip
        raise IntakeError(404, "petition_not_found", "no open petition with this id")

    async def petition(self, request: Request) -> Response:
        petition_id = parse_petition_id(request.path_params["petition_id"])
        card = await self.queue.petition(petition_id)
        if card is None:
            raise IntakeError(404, "petition_not_found", "no petition with this id")
        return json_response(
            {
                "id": card.id,
                "slug": card.slug,
                "title": card.title,
                "starter_name": card.starter_name,
                "status": card.status,
                "signature_count": card.signature_count,
                "awaiting_confirmation": card.awaiting_confirmation,
                "confirm_email": card.confirm_email,
                "target": card.target or None,
                "call_to_action": call_to_action(card.starter_name, card.status, card.signature_count),
            }
        )

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when Redis answers and the acknowledgement durability holds (enough replicas
        keeping up under `replica`); the body says which mode is in force and its state."""
        durability = await self.queue.durability()
        if not durability["holds"]:
            return json_response(
                {"status": "degraded", "durability": durability}, 503, {"Retry-After": RETRY_AFTER_DOWN}
            )
        return json_response({"status": "ready", "durability": durability})


Handler = Callable[[Request], Awaitable[Response]]


def accepted_body(appended: Appended) -> dict[str, str]:
    """The 202's body: the receipt, and `"confirmation": "email"` when the signature counts only
    once its signer follows the emailed link."""
    body = {"receipt": appended.receipt or "", "status": "queued"}
    if appended.confirm:
        body["confirmation"] = "email"
    return body


def answering_errors(handler: Handler) -> Handler:
    """Turn `IntakeError` and `QueueUnavailable` into their documented answers."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except IntakeError as exc:
            headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
            return json_response(exc.body(), exc.status, headers)
        except QueueUnavailable:
            return json_response(
                {"error": "unavailable", "detail": "the queue is unreachable; try again shortly"},
                503,
                {"Retry-After": RETRY_AFTER_DOWN},
            )

    return wrapped
