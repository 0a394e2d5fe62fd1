"""The benchmark's signatures: pure and seeded, so every stage and every peer sees the same mix.

N signatures over 50 petitions (petition 0 takes 60 %), 10 % duplicates written as case, dot
or `+tag` variants of an earlier signer of the same petition, 2 % invalid emails. Signers share
a few big domains plus a long tail, as real traffic does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PETITIONS = 50
HOT_SHARE = 0.60
DUPLICATE_SHARE = 0.10
INVALID_SHARE = 0.02
DOMAINS = (
    ["gmail.com"] * 40
    + ["yahoo.com"] * 10
    + ["hotmail.com"] * 8
    + ["outlook.com"] * 8
    + ["googlemail.com"] * 2
    + ["icloud.com"] * 5
    + ["aol.com"] * 3
    + ["gmx.de"] * 3
    + ["orange.fr"] * 3
    + ["web.de"] * 2
    + ["example.org"] * 2
)
INVALID = (
    "{u}@{d}.",  # trailing dot
    "{u}..x@{d}",  # consecutive dots
    "{u}@-{d}",  # label starts with a hyphen
    "{u} x@{d}",  # space in the local part
    "{u}@localhost",  # no dot in the domain
    ".{u}@{d}",  # leading dot
    "{u}@{d}..com",  # empty label
)
FIRST = ("ann", "bob", "chloé", "dan", "eve", "fatima", "george", "hana", "ivan", "jose", "kim", "li")


@dataclass(frozen=True, slots=True)
class Signature:
    petition: int  # index 0..PETITIONS-1 (0 is the hot one)
    email: str
    name: str
    kind: str  # "new", "duplicate" or "invalid"


def petition_index(rng: random.Random) -> int:
    return 0 if rng.random() < HOT_SHARE else rng.randrange(1, PETITIONS)


def variant(email: str, rng: random.Random) -> str:
    """The same person typed differently: case, gmail dots or a +tag."""
    local, domain = email.split("@")
    choice = rng.randrange(3)
    if choice == 0:
        return f"{local.upper()}@{domain.upper()}"
    if choice == 1 and domain in ("gmail.com", "googlemail.com"):
        return f"{local[:1]}.{local[1:]}@{domain}"
    return f"{local}+petition{rng.randrange(100)}@{domain}"


def signatures(n: int, seed: int = 5, tag: str = "") -> list[Signature]:
    """`n` signatures; `tag` makes addresses distinct between runs sharing a database."""
    rng = random.Random(seed)
    signed: list[list[str]] = [[] for _ in range(PETITIONS)]
    out: list[Signature] = []
    for i in range(n):
        petition = petition_index(rng)
        roll = rng.random()
        first = FIRST[i % len(FIRST)]
        domain = rng.choice(DOMAINS) if rng.random() < 0.95 else f"mail{rng.randrange(10**6)}.example.net"
        if roll < INVALID_SHARE:
            email = rng.choice(INVALID).format(u=f"{first}{i}{tag}", d=domain)
            kind = "invalid"
        elif roll < INVALID_SHARE + DUPLICATE_SHARE and signed[petition]:
            email = variant(rng.choice(signed[petition]), rng)
            kind = "duplicate"
        else:
            email = f"{first}.{i}{tag}@{domain}"
            signed[petition].append(email)
            kind = "new"
        out.append(Signature(petition, email, f"{first.title()} Signer {i}", kind))
    return out
