"""The petition site's own words for a petition's call to action. Pure."""

from __future__ import annotations


def first_name(full_name: str) -> str:
    return full_name.split()[0] if full_name.split() else full_name


def call_to_action(starter_name: str, status: str, signature_count: int) -> str:
    """ "Join Clara and 262 supporters today." for Clara LONG's open petition with 263 signatures
    (the starter's own signature is supporter number one)."""
    if status == "victory":
        return f"This petition made change with {signature_count} supporters!"
    if status == "closed":
        return f"This petition is closed. {signature_count} people signed it."
    others = max(signature_count - 1, 0)
    return f"Join {first_name(starter_name)} and {others} supporters today."
