"""What the petition page needs to know about a request and how to word a refusal. Pure.

Content negotiation (HTML for browsers, JSON for everyone else), telling a browser's form post
from an API client's, and the plain words a signer sees for each intake error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from api_stub.intake.parse import FORM_TYPES, media_type

HTML_TYPES = ("text/html", "application/xhtml+xml")
HONEYPOT = "comment"  # hidden from people and screen readers; bots fill it
FORM_FIELDS = ("name", "email", "postcode", "country", "opt_in")
LABELS = {"name": "Name", "email": "Email address", "postcode": "Postcode", "country": "Country"}
REQUIRED = {"name": "Enter your name.", "email": "Enter your email address."}
AT_MOST = re.compile(r"must be at most (\d+) characters")

# What a signer reads for each refusal, by the intake's error code.
MESSAGES = {
    "invalid_fields": "Please correct the fields marked below.",
    "csrf_failed": "This form had expired, so nothing was sent. Please press “Sign this petition” again.",
    "malformed_body": "Your browser sent the form in a way we could not read. Please try again.",
    "body_too_large": "The form is too long to send. Please shorten what you typed and try again.",
    "body_timeout": "The form took too long to arrive. Please press “Sign this petition” again.",
    "petition_closed": "This petition has closed, so your signature could not be added.",
    "petition_not_found": "We could not find this petition.",
    "unavailable": "We could not take your signature just now. "
    "Please try again in a minute; your details are still in the form.",
    "backlog_full": "We are taking a great many signatures right now and could not add yours. "
    "Please try again in a minute; your details are still in the form.",
}


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The Accept header's media ranges with their q values."""
    ranges = []
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((kind.lower(), q))
    return ranges


def _quality(ranges: list[tuple[str, float]], wanted: str) -> float:
    """q of `wanted` from the most specific range that matches it (RFC 9110, 12.5.1)."""
    family = wanted.split("/", 1)[0] + "/*"
    for candidate in (wanted, family, "*/*"):
        matching = [q for kind, q in ranges if kind == candidate]
        if matching:
            return max(matching)
    return 0.0


def prefers_html(accept: str | None) -> bool:
    """True when the client ranks HTML above JSON; ties and no Accept header mean JSON."""
    if not accept or "html" not in accept:
        return False
    ranges = _ranges(accept)
    html = max(_quality(ranges, kind) for kind in HTML_TYPES)
    return html > _quality(ranges, "application/json")


def is_browser_form(headers: Mapping[str, str]) -> bool:
    """A form post from a browser: it gets CSRF checks, the honeypot and answers in plain words.

    Browsers mark their posts (`Origin`, `Sec-Fetch-Site`, our cookie, or asking for HTML); an API
    client posting a form with none of these is answered as the intake always has.
    """
    if media_type(headers.get("content-type")) not in FORM_TYPES:
        return False
    return (
        "origin" in headers
        or "sec-fetch-site" in headers
        or "cookie" in headers
        or prefers_html(headers.get("accept"))
    )


def plain_message(field: str, detail: str) -> str:
    """The intake's terse field error (`is required`, `must be at most 16 characters`) as a sentence."""
    label = LABELS.get(field, field.replace("_", " ").capitalize())
    if detail in ("is required", "must not be empty"):
        return REQUIRED.get(field, f"Enter your {label.lower()}.")
    if field == "email" and detail == "must contain exactly one @":
        return "Enter an email address like name@example.org."
    if longest := AT_MOST.fullmatch(detail):
        return f"{label} must be at most {longest[1]} characters. Please shorten it."
    if "control characters" in detail:
        return f"{label} contains characters we cannot store. Please retype it."
    if detail[:1].isupper():
        return detail  # already a sentence (the email checker's own words)
    return f"{label} {detail}."


def plain_messages(errors: Mapping[str, str]) -> dict[str, str]:
    return {field: plain_message(field, detail) for field, detail in errors.items()}


def form_values(data: Mapping[str, object]) -> dict[str, str]:
    """The signer's own typing, to put back in the form after a refusal."""
    return {name: value for name in FORM_FIELDS if isinstance(value := data.get(name), str)}
