"""Turn a batch of stream entries into a plan: rows to insert, rejects to record, poison to retry.

`plan_batch` is the whole pure part of the pipeline. The store then checks the plan's rows
against the petitions table (`check_petitions`, also pure, given their states) and writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
)
from worker.pipeline.fields import InvalidFields, parse_fields

MAX_PETITION_ID = 2**63 - 1


class Row(NamedTuple):
    """A signature to insert. A named tuple in the store's column order (`store.ROW_COLUMNS`):
    cheaper to build than a frozen dataclass, and handed to COPY as it is."""

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


Judge = Callable[[list[Row]], list[Row]]
# A person holds at most one row in these states per petition; the others never take the place.
LIVE_STATES = frozenset({"validated", "pending"})


def plan_batch(entries: Sequence[Entry], emails: EmailChecker, judge: Judge | None = None) -> BatchPlan:
    """Decode, validate, canonicalise, judge and deduplicate one batch. Never raises for bad entries.

    `judge` (the abuse limits) marks rows fraudulent before people are deduplicated, so that
    an uncounted row never takes a person's place (`one_counted_per_person`)."""
    plan = BatchPlan(entries=list(entries))
    rows, rejects = [], plan.rejects
    seen_receipts: set[str] = set()
    times: dict[int, datetime] = {}
    for entry in entries:
        try:
            submission = decode(entry, times)
        except UndecodableEntry as exc:
            # Not a signature: a confirmation (it has no fields), else poison. Asked only here, so
            # a signature pays nothing for the confirmations sharing its stream.
            confirmation = decode_confirmation(entry)
            if confirmation is not None:
                plan.confirmations.append(confirmation)
            else:
                plan.poison.append(Poison(entry, str(exc)))
            continue
        receipt = submission.receipt
        if receipt in seen_receipts:
            continue  # the same entry twice in one batch (a claim raced a read): once is enough
        seen_receipts.add(receipt)
        outcome = check_submission(submission, emails)
        if isinstance(outcome, Reject):
            rejects.append(outcome)
        else:
            rows.append(outcome)
    plan.rows = one_counted_per_person(judge(rows) if judge is not None else rows, rejects)
    return plan


def one_counted_per_person(rows: list[Row], rejects: list[Reject]) -> list[Row]:
    """The rows to store: the first live row (`validated`, or `pending` its signer's
    confirmation) of each person and petition, and every uncounted row of a person with no live
    row earlier in the batch; the others are appended to `rejects` as duplicates. An uncounted
    row never takes the place, so a fraudulent entry ahead of the person's own in the batch does
    not turn theirs into a duplicate. (A row becomes `pending` only in `check_petitions`, after
    this, but counts as live either way: the store's unique key holds it to the same rule.)"""
    kept: list[Row] = []
    live: set[tuple[int, str]] = set()
    for row in rows:
        person = (row.petition_id, row.canonical_email)
        if person in live:
            rejects.append(Reject(row.receipt, row.petition_id, "duplicate", None, row.accepted_at))
            continue
        if row.state in LIVE_STATES:
            live.add(person)
        kept.append(row)
    return kept


_new_row = tuple.__new__


def check_submission(submission: Submission, emails: EmailChecker) -> Row | Reject:
    """One submission's fields and email, as a row to insert or a reject with its reason."""
    _, receipt, petition_id, accepted_at, ip_hash, raw_fields, honeypot = submission
    if not 0 < petition_id <= MAX_PETITION_ID:
        return _reject(submission, "unknown_petition", "petition id out of range")
    try:
        email, name, postcode, country, opt_in, _ = parse_fields(raw_fields)
        canonical = emails.canonical(email)
    except InvalidFields as exc:
        return _reject(submission, "invalid_field", str(exc))
    except EmailNotValidError as exc:
        return _reject(submission, "invalid_email", str(exc))
    state = "fraudulent" if honeypot else "validated"
    # Row(...) without its keyword-handling __new__: the same tuple, built in one C call.
    values = (receipt, petition_id, email, canonical, name, postcode, country, opt_in, ip_hash, accepted_at)
    return _new_row(Row, (*values, state))


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
