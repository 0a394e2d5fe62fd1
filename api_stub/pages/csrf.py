"""Stateless CSRF protection for the signing form: a signed double-submit token. Pure.

The page sets a random nonce in a cookie (HttpOnly, SameSite=Lax) and puts
`<timestamp>.<HMAC(secret, nonce.timestamp)>` in the form. A post is genuine when its token was
signed for the nonce in its own cookie and is younger than the maximum age: another site can
neither read nor set our cookie, so it cannot forge a matching pair. Nothing is stored server-side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TypeGuard
from urllib.parse import urlsplit

COOKIE = "sig_csrf"
FIELD = "csrf_token"
CLOCK_SKEW_SECONDS = 60  # tokens from a few seconds "in the future" (another intake's clock) pass
NONCE_CHARS = frozenset("0123456789abcdef")


def new_nonce() -> str:
    return secrets.token_hex(16)


def valid_nonce(nonce: str | None) -> TypeGuard[str]:
    return nonce is not None and len(nonce) == 32 and set(nonce) <= NONCE_CHARS


def make_token(secret: str, nonce: str, now: int) -> str:
    """The form's token for the visitor holding `nonce`, issued at `now` (seconds)."""
    return f"{now}.{_mac(secret, nonce, now)}"


def check_token(secret: str, nonce: str | None, token: object, now: int, max_age: int) -> bool:
    """True when `token` was made for `nonce` less than `max_age` seconds ago."""
    if not valid_nonce(nonce) or not isinstance(token, str):
        return False
    issued, _, mac = token.partition(".")
    # ASCII first: str.isdigit() is true for "²" and "٣", which int() then refuses or reads,
    # and compare_digest() raises on a non-ASCII string.
    if not (issued.isascii() and mac.isascii() and issued.isdigit()) or len(issued) > 12:
        return False
    age = now - int(issued)
    if not -CLOCK_SKEW_SECONDS <= age <= max_age:
        return False
    return hmac.compare_digest(mac, _mac(secret, nonce, int(issued)))


def same_origin(origin: str | None, host: str | None, scheme: str, public_url: str) -> bool:
    """False when a browser says the post came from another site (`Origin` names another host).

    A missing `Origin` is left to the token; "null" (a sandboxed or privacy-hiding page) is refused.
    """
    if origin is None:
        return True
    allowed = {f"{scheme}://{host}".lower(), _origin_of(public_url)}
    return origin.lower() in allowed


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _mac(secret: str, nonce: str, issued: int) -> str:
    message = f"{nonce}.{issued}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]
