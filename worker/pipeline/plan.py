"""Turn a batch of stream entries into a plan: rows to insert, rejects to record, poison to retry.

`plan_batch` is the whole pure part of the pipeline. The store then checks the plan's rows
against the petitions table (`check_petitions`, also pure, given their states) and writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from email_validator import EmailNotValidError

from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import (
    Confirmation,
    Entry,
    Submission,
    UndecodableEntry,
    decode,
    decode_confirmation,
    decode_usual,
)
from worker.pipeline.fields import InvalidFields, parse_fields, usual_fields

MAX_PETITION_ID = 2**63 - 1


class Row(NamedTuple):
    """A signature to insert. A named tuple in the store's column order (`store.ROW_COLUMNS`):
    built several times faster than a frozen dataclass, and handed to COPY as it is."""

    receipt: str
    petition_id: int
    email: str
    canonical_email: str
    name: str
    postcode: str | None
    country: str | None
    opt_in: bool
    ip_hash: str | None
    accepted_at: datetime
    state: str = "validated"


@dataclass(frozen=True, slots=True)
class Reject:
    """A submission refused after the intake accepted it, with the reason recorded."""

    receipt: str
    petition_id: int | None
    reason: str
    detail: str | None
    accepted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Poison:
    """An entry that could not be processed; left pending until `MAX_DELIVERIES`, then dead-lettered."""

    entry: Entry
    error: str


@dataclass(frozen=True, slots=True)
class PetitionState:
    status: str
    closed_at: datetime | None
    confirm_email: bool = False  # its new signatures are stored `pending`


@dataclass
class BatchPlan:
    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)
    # A confirmation whose signature is nowhere yet waits this many deliveries, then is refused.
    max_deliveries: int = 5

    def done_entries(self, waiting: Iterable[Entry] = ()) -> list[Entry]:
        """Entries to acknowledge once the plan is committed: all but the poison and `waiting`
        (confirmations whose signature is not stored yet: left pending, delivered again)."""
        held = {(e.shard, e.entry_id) for e in waiting}
        held.update((p.entry.shard, p.entry.entry_id) for p in self.poison)
        if not held:
            return self.entries
        return [e for e in self.entries if (e.shard, e.entry_id) not in held]

    def petition_ids(self) -> list[int]:
        return sorted({row.petition_id for row in self.rows})


def plan_batch(entries: Sequence[Entry], emails: EmailChecker) -> BatchPlan:
    """Decode, validate, canonicalise and deduplicate one batch. Never raises for bad entries.

    An entry as our intake writes it, with valid fields and email, takes `usual_row` (fewer
    calls and objects: this loop runs for every signature); any other entry, or one that path
    does not accept, goes through `decode` and `check_submission`, which give the reasons."""
    plan = BatchPlan(entries=list(entries))
    rows, rejects = plan.rows, plan.rejects
    seen_receipts: set[str] = set()
    seen_people: set[tuple[int, str]] = set()
    times: dict[int, datetime] = {}
    for entry in entries:
        row = usual_row(entry.payload, emails, times)
        if row is not None:
            if row.receipt in seen_receipts:
                continue  # the same entry twice in one batch (a claim raced a read): once is enough
            seen_receipts.add(row.receipt)
            if isinstance(row, Reject):
                rejects.append(row)
                continue
            person = (row.petition_id, row.canonical_email)
            if person in seen_people:
                rejects.append(Reject(row.receipt, row.petition_id, "duplicate", None, row.accepted_at))
            else:
                seen_people.add(person)
                rows.append(row)
            continue
        confirmation = decode_confirmation(entry)
        if confirmation is not None:
            plan.confirmations.append(confirmation)
            continue
        try:
            submission = decode(entry)
        except UndecodableEntry as exc:
            plan.poison.append(Poison(entry, str(exc)))
            continue
        if submission.receipt in seen_receipts:
            continue
        seen_receipts.add(submission.receipt)
        outcome = check_submission(submission, emails)
        if isinstance(outcome, Reject):
            rejects.append(outcome)
        elif (outcome.petition_id, outcome.canonical_email) in seen_people:
            rejects.append(_reject(submission, "duplicate", None))
        else:
            seen_people.add((outcome.petition_id, outcome.canonical_email))
            rows.append(outcome)
    return plan


_new_row = tuple.__new__


def usual_row(payload: bytes | None, emails: EmailChecker, times: dict[int, datetime]) -> Row | Reject | None:
    """`check_submission(decode(entry))` when the entry and its fields are as our intake writes
    them and valid: the row, or the `invalid_email` reject; None for anything else (decode it,
    then)."""
    usual = decode_usual(payload, times)
    if usual is None:
        return None
    receipt, petition_id, accepted_at, ip_hash, raw_fields, honeypot = usual
    fields = usual_fields(raw_fields)
    if fields is None or not 0 < petition_id <= MAX_PETITION_ID:
        return None
    email, name, postcode, country, opt_in = fields
    try:
        canonical = emails.canonical(email)
    except EmailNotValidError as exc:  # what `check_submission` finds after the same checks
        return Reject(receipt, petition_id, "invalid_email", str(exc), accepted_at)
    state = "fraudulent" if honeypot else "validated"
    # Row(...) without its keyword-handling __new__: the same tuple, built in one C call.
    values = (receipt, petition_id, email, canonical, name, postcode, country, opt_in, ip_hash, accepted_at)
    return _new_row(Row, (*values, state))


def check_submission(submission: Submission, emails: EmailChecker) -> Row | Reject:
    """One submission's fields and email, as a row to insert or a reject with its reason."""
    if not 0 < submission.petition_id <= MAX_PETITION_ID:
        return _reject(submission, "unknown_petition", "petition id out of range")
    try:
        fields = parse_fields(submission.raw_fields)
    except InvalidFields as exc:
        return _reject(submission, "invalid_field", str(exc))
    try:
        checked = emails.check(fields.email)
    except EmailNotValidError as exc:
        return _reject(submission, "invalid_email", str(exc))
    return Row(
        receipt=submission.receipt,
        petition_id=submission.petition_id,
        email=fields.email,
        canonical_email=checked.canonical,
        name=fields.name,
        postcode=fields.postcode,
        country=fields.country,
        opt_in=fields.opt_in,
        ip_hash=submission.ip_hash,
        accepted_at=submission.accepted_at,
        state="fraudulent" if submission.honeypot else "validated",
    )


def check_petitions(rows: Iterable[Row], states: dict[int, PetitionState]) -> tuple[list[Row], list[Reject]]:
    """Keep rows whose petition exists and was open when the signature was accepted; a kept row
    of a petition in email-confirmation mode is stored `pending` instead of `validated`."""
    rows = list(rows)
    petitions = {row.petition_id for row in rows}
    if all(p in states and states[p].status == "open" and not states[p].confirm_email for p in petitions):
        return rows, []  # the usual batch: every row kept, without a look at each
    kept: list[Row] = []
    rejects: list[Reject] = []
    for row in rows:
        state = states.get(row.petition_id)
        if state is None:
            rejects.append(_reject_row(row, "unknown_petition", "no such petition"))
        elif state.status != "open" and (state.closed_at is None or row.accepted_at >= state.closed_at):
            rejects.append(_reject_row(row, "petition_closed", f"petition is {state.status}"))
        elif state.confirm_email and row.state == "validated":
            kept.append(row._replace(state="pending"))
        else:
            kept.append(row)
    return kept, rejects


def _reject(submission: Submission, reason: str, detail: str | None) -> Reject:
    petition_id = submission.petition_id if 0 < submission.petition_id <= MAX_PETITION_ID else None
    return Reject(submission.receipt, petition_id, reason, detail, submission.accepted_at)


def _reject_row(row: Row, reason: str, detail: str) -> Reject:
    return Reject(row.receipt, row.petition_id, reason, detail, row.accepted_at)
