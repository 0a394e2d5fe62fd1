"""Unsubscribe tokens: the canonical email and an HMAC-SHA256 of it, keyed by UNSUBSCRIBE_SECRET.

A token is `<base64url(email)>.<base64url(hmac)>`. Anyone holding the link can unsubscribe that
address and nothing else; changing either half makes it invalid. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

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
