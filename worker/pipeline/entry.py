"""The stream entry format, written by the intake and read by the worker: defined once, here.

An entry is one field `s` holding compact JSON: receipt, petition id, accepted-at (ms since
the epoch), keyed IP hash and the checked fields. One field keeps Redis memory per queued
signature low (see BENCHMARKS.md). Optional keys are written only when set, so entries from an
older intake decode unchanged: `hp: 1` marks a form post whose honeypot field was filled.

A confirmation (the signer followed the emailed link) is an entry of its own on the same
streams: `{"k": "c", "r": receipt, "p": petition id, "t": ms}`. It has no fields, so the
signature decoders never take it for a signature.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from worker.pipeline.fields import SignatureFields

FIELD = b"s"


class Entry(NamedTuple):
    """One stream entry as read from Redis, with how often it has been delivered. Named tuples
    here and for the other per-signature records: built ~4x faster than frozen dataclasses."""

    shard: int
    entry_id: str
    payload: bytes | None
    deliveries: int = 1


class Submission(NamedTuple):
    """A decoded entry: who signed what, when it was accepted, and its receipt."""

    entry: Entry
    receipt: str
    petition_id: int
    accepted_at: datetime
    ip_hash: str | None
    raw_fields: dict[str, Any]
    honeypot: bool = False  # a bot filled the form's hidden field: store as fraudulent


class Confirmation(NamedTuple):
    """A signer confirmed the signature with this receipt (the link's MAC was checked)."""

    entry: Entry
    receipt: str
    petition_id: int


CONFIRMATION_KIND = "c"


class UndecodableEntry(ValueError):
    """The entry cannot even be identified (no receipt, not JSON): retried, then dead-lettered."""


def encode(
    receipt: str,
    petition_id: int,
    accepted_ms: int,
    ip_hash: str | None,
    fields: SignatureFields,
    *,
    honeypot: bool = False,
) -> bytes:
    body: dict[str, object] = {"r": receipt, "p": petition_id, "t": accepted_ms, "f": fields.as_payload()}
    if ip_hash:
        body["ip"] = ip_hash
    if honeypot:
        body["hp"] = 1
    return orjson.dumps(body)


# What `decode_usual` reads from an entry: receipt, petition id, accepted-at, IP hash, raw
# fields, honeypot flag (a plain tuple: the drain builds one per signature).
Usual = tuple[str, int, datetime, str | None, dict[str, Any], bool]


def decode_usual(payload: bytes | None, times: dict[int, datetime]) -> Usual | None:
    """`decode`'s answer for an entry as our intake writes it, in fewer calls; None for anything
    else, which `decode` then answers (or refuses) itself. `times` caches the accepted-at
    datetime per millisecond: the entries of a spike share them."""
    try:
        body = orjson.loads(payload or b"")
    except orjson.JSONDecodeError:
        return None
    if body.__class__ is not dict:
        return None
    receipt, petition_id, accepted_ms = body.get("r"), body.get("p"), body.get("t")
    fields, ip_hash, honeypot = body.get("f"), body.get("ip"), body.get("hp", 0)
    if (
        receipt.__class__ is not str
        or not 0 < len(receipt) <= 64
        or petition_id.__class__ is not int
        or accepted_ms.__class__ is not int
        or fields.__class__ is not dict
        or not (ip_hash is None or ip_hash.__class__ is str)
        or honeypot.__class__ is not int
        or not (honeypot == 0 or honeypot == 1)
    ):
        return None
    accepted_at = times.get(accepted_ms)
    if accepted_at is None:
        try:
            accepted_at = times[accepted_ms] = datetime.fromtimestamp(accepted_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return receipt, petition_id, accepted_at, ip_hash, fields, honeypot == 1


def decode(entry: Entry) -> Submission:
    """Read an entry; raise `UndecodableEntry` when it is not what the intake writes."""
    try:
        body = orjson.loads(entry.payload or b"")
    except orjson.JSONDecodeError as exc:
        raise UndecodableEntry(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UndecodableEntry("payload is not a JSON object")
    receipt, petition_id, accepted_ms = body.get("r"), body.get("p"), body.get("t")
    fields, ip_hash = body.get("f"), body.get("ip")
    if not isinstance(receipt, str) or not 0 < len(receipt) <= 64:
        raise UndecodableEntry("payload has no receipt")
    if type(petition_id) is not int or type(accepted_ms) is not int:
        raise UndecodableEntry("payload's petition id or accepted time is not an integer")
    if not isinstance(fields, dict) or not (ip_hash is None or isinstance(ip_hash, str)):
        raise UndecodableEntry("payload's fields are not an object")
    try:
        accepted_at = datetime.fromtimestamp(accepted_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise UndecodableEntry("payload's accepted time is out of range") from None
    honeypot = body.get("hp", 0)
    if honeypot not in (0, 1) or isinstance(honeypot, bool):
        raise UndecodableEntry("payload's honeypot flag is not 0 or 1")
    return Submission(entry, receipt, petition_id, accepted_at, ip_hash, fields, honeypot == 1)


def encode_confirmation(receipt: str, petition_id: int, confirmed_ms: int) -> bytes:
    return orjson.dumps({"k": CONFIRMATION_KIND, "r": receipt, "p": petition_id, "t": confirmed_ms})


def decode_confirmation(entry: Entry) -> Confirmation | None:
    """The confirmation an entry carries; None when it is not one (a signature, or junk)."""
    try:
        body = orjson.loads(entry.payload or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("k") != CONFIRMATION_KIND:
        return None
    receipt, petition_id = body.get("r"), body.get("p")
    if not isinstance(receipt, str) or not 0 < len(receipt) <= 64 or type(petition_id) is not int:
        return None
    return Confirmation(entry, receipt, petition_id)
