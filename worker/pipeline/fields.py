"""The cheap field checks, shared by the intake (answer 422) and the worker (reject `invalid_field`).

The worker runs them again because a stream entry may come from an older intake or another
producer: nothing is trusted just because it is queued.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

MAX_EMAIL = 254
MAX_NAME = 200
MAX_POSTCODE = 16
MAX_COUNTRY = 64
MAX_IDEMPOTENCY_KEY = 200
FORM_TRUE = frozenset({"on", "true", "1", "yes"})
FORM_FALSE = frozenset({"", "off", "false", "0", "no"})


class SignatureFields(NamedTuple):
    email: str
    name: str
    postcode: str | None = None
    country: str | None = None
    opt_in: bool = False
    idempotency_key: str | None = None

    def as_payload(self) -> dict[str, object]:
        """The fields a stream entry carries (the idempotency key stays at the intake)."""
        payload: dict[str, object] = {"email": self.email, "name": self.name}
        if self.postcode is not None:
            payload["postcode"] = self.postcode
        if self.country is not None:
            payload["country"] = self.country
        if self.opt_in:
            payload["opt_in"] = True
        return payload


class InvalidFields(ValueError):
    """The submission's fields break a rule: answer 422 at the intake, `invalid_field` later."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
        self.errors = errors


# Unicode categories Cc (control: C0, DEL, C1) and Cs (surrogates), as one character class:
# one regex scan instead of a category look-up per character (the drain's second wall).
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def unprintable(text: str) -> bool:
    """True for text PostgreSQL or a mail header cannot carry: control characters, surrogates."""
    return UNPRINTABLE.search(text) is not None


def _text(
    data: Mapping[str, object], field: str, limit: int, errors: dict[str, str], *, required: bool
) -> str | None:
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            errors[field] = "is required"
        return None
    if not isinstance(value, str):
        errors[field] = "must be a string"
        return None
    value = value.strip()
    if required and not value:
        errors[field] = "must not be empty"
    elif len(value) > limit:
        errors[field] = f"must be at most {limit} characters"
    elif unprintable(value):
        errors[field] = "must not contain control characters"
    else:
        return value
    return None


def _opt_in(value: object, errors: dict[str, str]) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in FORM_TRUE | FORM_FALSE:
        return value.strip().lower() in FORM_TRUE
    errors["opt_in"] = "must be true or false"
    return False


USUAL_KEYS = frozenset({"email", "name", "postcode", "country", "opt_in"})
_new_fields = tuple.__new__


def parse_fields(data: Mapping[str, object]) -> SignatureFields:
    """Check every field at once; raise `InvalidFields` naming each bad one."""
    # The fast path, as the drain runs this per signature: valid fields as our intake writes them,
    # checked in one pass with one unprintable scan; anything else, the per-field checks below.
    email, name = data.get("email"), data.get("name")
    if email.__class__ is str and name.__class__ is str and USUAL_KEYS.issuperset(data):
        email, name = email.strip(), name.strip()
        postcode, country, opt_in = data.get("postcode"), data.get("country"), data.get("opt_in")
        text = email + name
        if postcode.__class__ is str:
            postcode = postcode.strip() or None
            text += postcode or ""
        if country.__class__ is str:
            country = country.strip() or None
            text += country or ""
        if (
            email
            and name
            and len(email) <= MAX_EMAIL
            and len(name) <= MAX_NAME
            and email.count("@") == 1
            and (postcode is None or (postcode.__class__ is str and len(postcode) <= MAX_POSTCODE))
            and (country is None or (country.__class__ is str and len(country) <= MAX_COUNTRY))
            and (opt_in is None or opt_in is True or opt_in is False)
            and not UNPRINTABLE.search(text)
        ):
            return _new_fields(SignatureFields, (email, name, postcode, country, opt_in is True, None))
    errors: dict[str, str] = {}
    email = _text(data, "email", MAX_EMAIL, errors, required=True)
    if email is not None and email.count("@") != 1:
        errors["email"] = "must contain exactly one @"
    name = _text(data, "name", MAX_NAME, errors, required=True)
    postcode = _text(data, "postcode", MAX_POSTCODE, errors, required=False)
    country = _text(data, "country", MAX_COUNTRY, errors, required=False)
    opt_in = _opt_in(data.get("opt_in"), errors)
    key = _text(data, "idempotency_key", MAX_IDEMPOTENCY_KEY, errors, required=False)
    if errors or email is None or name is None:
        raise InvalidFields(errors)
    return SignatureFields(email, name, postcode, country, opt_in, key)
