"""Unsubscribe tokens: the reminder delivery's id and an HMAC-SHA256 of it, keyed by
UNSUBSCRIBE_SECRET. Pure functions.

A token is `<delivery id>.<base64url(hmac)>`: the URL names a row of `reminder_deliveries`, never
the address, so proxy logs and browser history hold nothing that leads back to a person without
the database. Anyone holding the link can unsubscribe that delivery's person and no one else;
changing either half makes it invalid.

Links sent before this format were `<base64url(canonical email)>.<base64url(hmac)>` (another HMAC
context). `read_token` still honours them so old emails keep working; nothing makes new ones.
The reminder to confirm a signature is no delivery: its link is `s<signature id>.<hmac>`.
What a token names is recorded by the intake as a field of the pending-unsubscribes hash:
`delivery:<id>`, `signature:<id>`, or the canonical email for an old link (`pending_field`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

MAX_TOKEN_LENGTH = 1024
# Distinct contexts, so the key never signs one kind of token with bytes that read as another.
_DELIVERY_CONTEXT = b"sigingest-unsubscribe-delivery:"
_ADDRESS_CONTEXT = b"sigingest-unsubscribe:"  # the old, address-bearing links
_SIGNATURE_CONTEXT = b"sigingest-unsubscribe-signature:"  # the reminder to confirm a signature
_DELIVERY_ID = re.compile(r"[1-9][0-9]{0,18}")  # one spelling per id: no sign, no leading zero
DELIVERY_FIELD_PREFIX = "delivery:"  # no "@": a field cannot be mistaken for an old link's address
SIGNATURE_FIELD_PREFIX = "signature:"
_SIGNATURE_ID = re.compile(r"s([1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class DeliveryToken:
    """A token naming the person of one `reminder_deliveries` row."""

    delivery_id: int


@dataclass(frozen=True, slots=True)
class SignatureToken:
    """A token naming the person of one `signatures` row (the reminder to confirm it)."""

    signature_id: int


@dataclass(frozen=True, slots=True)
class AddressToken:
    """An old-format token naming a canonical email (still honoured, never made)."""

    canonical_email: str


Unsubscriber = DeliveryToken | SignatureToken | AddressToken


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, context: bytes, named: str) -> bytes:
    return hmac.new(secret.encode(), context + named.encode(), hashlib.sha256).digest()


def _address_mac(secret: str, canonical_email: str) -> bytes:
    return _mac(secret, _ADDRESS_CONTEXT, canonical_email)


def _genuine(mac: bytes, keys: tuple[str, ...], context: bytes, named: str) -> bool:
    """`mac` was made for `named` in `context` with one of `keys` (the current, the previous)."""
    return any(hmac.compare_digest(mac, _mac(key, context, named)) for key in keys)


def make_token(secret: str, delivery_id: int) -> str:
    """The token for the unsubscribe link of delivery `delivery_id` (a positive row id)."""
    if delivery_id < 0:
        raise ValueError("a delivery id is never negative")
    return f"{delivery_id}.{_b64(_mac(secret, _DELIVERY_CONTEXT, str(delivery_id)))}"


def make_signature_token(secret: str, signature_id: int) -> str:
    """The unsubscribe token of the reminder to confirm signature `signature_id`."""
    if signature_id <= 0:
        raise ValueError("a signature id is positive")
    return f"s{signature_id}.{_b64(_mac(secret, _SIGNATURE_CONTEXT, str(signature_id)))}"


def read_token(secret: str, token: str, previous: str = "") -> Unsubscriber | None:
    """Whom a genuine token names, signed with `secret` or (during a rotation) the `previous`
    one; None for anything forged or mangled. Never raises for any string."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1 or not token.isascii():
        return None
    left, mac_part = token.split(".")
    try:
        mac = _unb64(mac_part)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if _b64(mac) != mac_part:  # one spelling per token: base64 forgives stray padding bits
        return None
    keys = (secret, previous) if previous else (secret,)
    if _DELIVERY_ID.fullmatch(left) and _genuine(mac, keys, _DELIVERY_CONTEXT, left):
        return DeliveryToken(int(left))
    signature = _SIGNATURE_ID.fullmatch(left)
    if signature:
        genuine = _genuine(mac, keys, _SIGNATURE_CONTEXT, signature.group(1))
        return SignatureToken(int(signature.group(1))) if genuine else None
    return _read_address_token(keys, left, mac)


def _read_address_token(keys: tuple[str, ...], email_part: str, mac: bytes) -> AddressToken | None:
    """A link mailed before links named deliveries: the address itself, still honoured."""
    try:
        email = _unb64(email_part).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not email or _b64(email.encode()) != email_part:
        return None
    return AddressToken(email) if _genuine(mac, keys, _ADDRESS_CONTEXT, email) else None


def pending_field(who: Unsubscriber) -> str:
    """The field the intake records in the pending-unsubscribes hash for `who`."""
    if isinstance(who, DeliveryToken):
        return f"{DELIVERY_FIELD_PREFIX}{who.delivery_id}"
    if isinstance(who, SignatureToken):
        return f"{SIGNATURE_FIELD_PREFIX}{who.signature_id}"
    return who.canonical_email


def signature_of_field(field: str) -> int | None:
    """The signature id a pending field names, or None when it names something else."""
    return _id_of_field(field, SIGNATURE_FIELD_PREFIX)


def delivery_of_field(field: str) -> int | None:
    """The delivery id a pending field names, or None when it names something else."""
    return _id_of_field(field, DELIVERY_FIELD_PREFIX)


def _id_of_field(field: str, prefix: str) -> int | None:
    rest = field.removeprefix(prefix)
    return int(rest) if rest != field and _DELIVERY_ID.fullmatch(rest) else None


# --- Confirmation tokens ---------------------------------------------------------------------
# `<petition id>.<receipt>.<base64url(mac)>`: the receipt is a random id the intake gave the
# signature (no address, nothing reversible into one), the MAC a truncated HMAC-SHA256 under a key
# derived from UNSUBSCRIBE_SECRET with its own purpose label, so no new secret is needed and no
# unsubscribe MAC can pass for a confirmation MAC. Checked without any database look-up.
CONFIRM_MAC_BYTES = 16
_CONFIRM_PURPOSE = b"sigingest-purpose:confirm"
_RECEIPT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def confirm_key(secret: str) -> bytes:
    """The confirmation tokens' own key, derived from `secret` with a purpose label."""
    return hmac.new(secret.encode(), _CONFIRM_PURPOSE, hashlib.sha256).digest()


def _confirm_mac(key: bytes, petition_id: int, receipt: str) -> bytes:
    return hmac.new(key, f"{petition_id}.{receipt}".encode(), hashlib.sha256).digest()[:CONFIRM_MAC_BYTES]


def make_confirm_token(key: bytes, petition_id: int, receipt: str) -> str:
    return f"{petition_id}.{receipt}.{_b64(_confirm_mac(key, petition_id, receipt))}"


def read_confirm_token(key: bytes, token: str, previous: bytes = b"") -> tuple[int, str] | None:
    """(petition id, receipt) of a genuine token, made with `key` or (during a rotation) the
    `previous` one; None for anything forged, cut or mangled. Never raises for any string."""
    if len(token) > 160 or token.count(".") != 2:
        return None
    petition_part, receipt, mac_part = token.split(".")
    if not (petition_part.isascii() and petition_part.isdigit() and len(petition_part) <= 18):
        return None
    if petition_part != str(int(petition_part)) or not _RECEIPT.fullmatch(receipt):
        return None
    try:
        mac = _unb64(mac_part)
    except (binascii.Error, ValueError):
        return None
    if len(mac) != CONFIRM_MAC_BYTES or _b64(mac) != mac_part:
        return None
    petition_id = int(petition_part)
    keys = (key, previous) if previous else (key,)
    if petition_id <= 0 or not any(
        hmac.compare_digest(mac, _confirm_mac(k, petition_id, receipt)) for k in keys
    ):
        return None
    return petition_id, receipt
