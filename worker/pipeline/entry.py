"""The stream entry format, written by the intake and read by the worker: defined once, here.

An entry is one field `s` holding compact JSON: receipt, petition id, accepted-at (ms since
the epoch), keyed IP hash and the checked fields. One field keeps Redis memory per queued
signature low (see BENCHMARKS.md). Optional keys are written only when set, so entries from an
older intake decode unchanged: `hp: 1` marks a form post whose honeypot field was filled.

A confirmation (the signer followed the emailed link) is an entry of its own on the same
streams: `{"k": "c", "r": receipt, "p": petition id, "t": ms}`. It has no fields, so the
signature decoder never takes it for a signature.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from worker.pipeline.fields import SignatureFields

FIELD = b"s"


class Entry(NamedTuple):
    """One stream entry as read from Redis, with how often it has been delivered. Named tuples
    here and for the other per-signature records: cheaper to build than frozen dataclasses."""

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


_new_submission = tuple.__new__


def decode(entry: Entry, times: dict[int, datetime] | None = None) -> Submission:
    """Read an entry; raise `UndecodableEntry` when it is not what the intake writes. `times`
    caches the accepted-at datetime per millisecond (the entries of a spike share them)."""
    try:
        body = orjson.loads(entry.payload or b"")
    except orjson.JSONDecodeError as exc:
        raise UndecodableEntry(f"payload is not UTF-8 JSON: {exc}") from None
    if body.__class__ is not dict:  # orjson builds exact types: `is` tests suffice, and cost less
        raise UndecodableEntry("payload is not a JSON object")
    receipt, petition_id, accepted_ms = body.get("r"), body.get("p"), body.get("t")
    fields, ip_hash, honeypot = body.get("f"), body.get("ip"), body.get("hp", 0)
    if receipt.__class__ is not str or not 0 < len(receipt) <= 64:
        raise UndecodableEntry("payload has no receipt")
    if petition_id.__class__ is not int or accepted_ms.__class__ is not int:
        raise UndecodableEntry("payload's petition id or accepted time is not an integer")
    if fields.__class__ is not dict or not (ip_hash is None or ip_hash.__class__ is str):
        raise UndecodableEntry("payload's fields are not an object")
    accepted_at = times.get(accepted_ms) if times is not None else None
    if accepted_at is None:
        try:
            accepted_at = datetime.fromtimestamp(accepted_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise UndecodableEntry("payload's accepted time is out of range") from None
        if times is not None:
            times[accepted_ms] = accepted_at
    if honeypot.__class__ is bool or honeypot not in (0, 1):
        raise UndecodableEntry("payload's honeypot flag is not 0 or 1")
    # Submission(...) without its keyword-handling __new__: the same tuple, built in one C call.
    values = (entry, receipt, petition_id, accepted_at, ip_hash, fields, honeypot == 1)
    return _new_submission(Submission, values)


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
