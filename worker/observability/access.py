"""Who may read `/metrics`: anyone, or with `METRICS_TOKEN` set only a bearer of that token.
Shared by the intake's endpoint and a worker host's."""

from __future__ import annotations

import hmac


def bearer_allowed(authorization: str | None, token: str) -> bool:
    """True without a token; else only for `Authorization: Bearer <token>` (compared in constant
    time, so the answer's timing tells nothing of the token)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
