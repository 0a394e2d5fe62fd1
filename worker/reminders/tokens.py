"""Unsubscribe tokens: the canonical email and an HMAC-SHA256 of it, keyed by UNSUBSCRIBE_SECRET.

A token is `<base64url(email)>.<base64url(hmac)>`. Anyone holding the link can unsubscribe that
address and nothing else; changing either half makes it invalid. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

MAX_TOKEN_LENGTH = 1024
_CONTEXT = b"sigingest-unsubscribe:"  # so the key never signs anything else with the same bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, canonical_email: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + canonical_email.encode(), hashlib.sha256).digest()


def make_token(secret: str, canonical_email: str) -> str:
    return f"{_b64(canonical_email.encode())}.{_b64(_mac(secret, canonical_email))}"


def read_token(secret: str, token: str, previous: str = "") -> str | None:
    """The canonical email a genuine token was made for, with `secret` or (during a rotation)
    the `previous` one; None for anything forged or mangled. Never raises for any string."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1 or not token.isascii():
        return None
    email_part, mac_part = token.split(".")
    try:
        email = _unb64(email_part).decode("utf-8")
        mac = _unb64(mac_part)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    # One spelling per token: base64 decoding forgives stray characters and padding bits.
    if not email or _b64(email.encode()) != email_part or _b64(mac) != mac_part:
        return None
    keys = (secret, previous) if previous else (secret,)
    return email if any(hmac.compare_digest(mac, _mac(key, email)) for key in keys) else None


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
