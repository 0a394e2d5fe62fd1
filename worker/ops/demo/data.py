"""The demo's viral spike as data: who signs, which submissions are duplicates or invalid. Pure.

Every signer's address carries the run id, so a second demo on the same petition brings new
people. Duplicates are variants of a signer's address that canonicalise to it (upper case, a
`+tag`, gmail dots, or the same address again); invalid ones either fail the intake's cheap
check (no `@`: answered 422) or pass it and fail full validation in the worker (rejected).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from enum import Enum

import orjson

SEED_TITLE = "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon"
SEED_STARTER = "Clara LONG"
SEED_TARGET = "Massachusetts Governor Deval Patrick"
# The seed petition's own words, shown on its page (the demo's text, written for it).
SEED_BODY = """\
Governor Patrick, Massachusetts has always been at its best when it welcomes people who come
here to work, study and build a life. Please do not join the governors who turn their backs on
immigrant families.

We ask you to:

- keep state services open to every family, whatever their papers say;
- refuse to turn local police into immigration agents;
- speak up, **publicly**, for the children who arrived alone at our border.

I am a teacher in Boston. My students' parents clean our offices, care for our elders and pick
our harvests. They are our neighbours. Stand with them, and ask the country to do the same.
"""


class Kind(Enum):
    UNIQUE = "unique"  # a signer's first submission in the plan
    DUPLICATE = "duplicate"  # another submission by a signer already in the plan
    INVALID = "invalid"  # fails the worker's validation (rejected, reason invalid_email)
    MALFORMED = "malformed"  # fails the intake's cheap check (422)


@dataclass(frozen=True, slots=True)
class Submission:
    body: bytes  # the JSON request body
    kind: Kind
    signer: int  # the signer a UNIQUE or DUPLICATE submission belongs to; -1 otherwise


@dataclass(frozen=True, slots=True)
class SpikeShape:
    signatures: int
    duplicate_share: float
    invalid_share: float

    def counts(self) -> tuple[int, int, int]:
        """(unique signers, duplicates, invalid) for this many submissions."""
        if not 0 <= self.duplicate_share <= 1 or not 0 <= self.invalid_share <= 1:
            raise ValueError("shares must be between 0 and 1")
        if self.duplicate_share + self.invalid_share > 1:
            raise ValueError("--duplicate-share plus --invalid-share must be at most 1")
        invalid = round(self.signatures * self.invalid_share)
        duplicates = round(self.signatures * self.duplicate_share)
        unique = self.signatures - invalid - duplicates
        if duplicates and unique < 1:
            raise ValueError("duplicates need at least one unique signer: lower --duplicate-share")
        return unique, duplicates, invalid


def address(run_id: str, signer: int) -> tuple[str, str]:
    """(local part, domain) of a signer; every other signer uses gmail, where dots do not count."""
    return f"s{run_id}n{signer}", "gmail.com" if signer % 2 else "example.org"


def variant(local: str, domain: str, rng: random.Random) -> str:
    """Another spelling of the same person's address (same canonical email)."""
    choice = rng.randrange(4)
    if choice == 0:
        return f"{local}@{domain}".upper()
    if choice == 1:
        return f"{local}+petition{rng.randrange(1000)}@{domain}"
    if choice == 2 and domain == "gmail.com":
        cut = rng.randrange(1, len(local))
        return f"{local[:cut]}.{local[cut:]}@{domain}"
    return f"{local}@{domain}"


def invalid_address(run_id: str, n: int) -> tuple[str, Kind]:
    """One bad address in four has no `@` (422 at the intake); the rest only the worker refuses."""
    kind = n % 4
    if kind == 0:
        return f"not-an-email-{run_id}-{n}", Kind.MALFORMED
    if kind == 1:
        return f"bad{run_id}n{n}@localhost", Kind.INVALID
    if kind == 2:
        return f"bad..{run_id}n{n}@example.org", Kind.INVALID
    return f"bad{run_id}n{n}@exa mple.org", Kind.INVALID


def body(email: str, name: str) -> bytes:
    return orjson.dumps({"email": email, "name": name})


def plan_spike(shape: SpikeShape, run_id: str, seed: int = 0) -> list[Submission]:
    """The submissions, shuffled so duplicates and invalid ones are spread through the spike."""
    unique, duplicates, invalid = shape.counts()
    rng = random.Random(seed)
    plan: list[Submission] = []
    for signer in range(unique):
        local, domain = address(run_id, signer)
        plan.append(Submission(body(f"{local}@{domain}", f"Supporter {signer}"), Kind.UNIQUE, signer))
    for _ in range(duplicates):
        signer = rng.randrange(unique)
        local, domain = address(run_id, signer)
        plan.append(
            Submission(body(variant(local, domain, rng), f"Supporter {signer}"), Kind.DUPLICATE, signer)
        )
    for n in range(invalid):
        email, kind = invalid_address(run_id, n)
        plan.append(Submission(body(email, "Someone"), kind, -1))
    rng.shuffle(plan)
    return plan


@dataclass
class Tally:
    """What the HTTP side saw."""

    planned: int = 0
    sent: int = 0
    accepted: int = 0
    malformed: int = 0  # 422 at the intake
    retries: int = 0
    given_up: int = 0
    signers: set[int] = field(default_factory=set)  # signers with an accepted submission
    accepted_signed: int = 0  # accepted UNIQUE or DUPLICATE submissions
    accepted_invalid: int = 0  # accepted submissions the worker must reject
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record(self, submission: Submission, status: int) -> None:
        if status == 202:
            self.accepted += 1
            if submission.kind in (Kind.UNIQUE, Kind.DUPLICATE):
                self.signers.add(submission.signer)
                self.accepted_signed += 1
            else:
                self.accepted_invalid += 1
        elif status == 422:
            self.malformed += 1


@dataclass(frozen=True)
class Snapshot:
    """The petition in PostgreSQL at one moment."""

    rows: int
    count: int
    duplicates: int
    rejected: int  # worker rejects other than duplicates

    def minus(self, base: Snapshot) -> Snapshot:
        return Snapshot(
            self.rows - base.rows,
            self.count - base.count,
            self.duplicates - base.duplicates,
            self.rejected - base.rejected,
        )
