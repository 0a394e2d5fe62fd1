"""The petition site's own words for a petition's call to action. Pure."""

from __future__ import annotations


def first_name(full_name: str) -> str:
    return full_name.split()[0] if full_name.split() else full_name


def call_to_action(starter_name: str, status: str, signature_count: int) -> str:
    """ "Join Clara and 17,599 supporters today." for Clara LONG's open petition with 17,600
    signatures (the starter's own signature is supporter number one); while she is the only
    signer, "Be the first to join Clara today." rather than "Join Clara and 0 supporters"."""
    if status == "victory":
        return f"This petition made change with {_people(signature_count, 'supporter', 'supporters')}!"
    if status == "closed":
        return f"This petition is closed. {_people(signature_count, 'person', 'people')} signed it."
    others = max(signature_count - 1, 0)
    name = first_name(starter_name)
    if others == 0:
        return f"Be the first to join {name} today."
    return f"Join {name} and {_people(others, 'other supporter', 'supporters')} today."


def _people(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"
