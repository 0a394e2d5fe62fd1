"""The confirmation part of a batch's transaction (called by `SignatureStore` inside it).

`pending -> validated` for every confirmed signature, in receipt order (two workers confirming
overlapping batches wait for each other in one direction, never in a cycle). Only a row still
`pending` changes, and the row lock makes a second, concurrent confirmation of it wait and then
find it `validated`: a signature is confirmed, and counted, once however often its link is
clicked or its event redelivered.

A confirmation whose signature is not stored is looked up among the rejected receipts (expired,
erased, duplicate...) and recorded with that reason; when it is nowhere yet (its signature is
still in the streams), it waits: left unacknowledged, delivered again, and recorded `unknown`
only on its last delivery.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import psycopg

from worker.pipeline.entry import Confirmation, Entry

Conn = psycopg.Connection[tuple[object, ...]]

CONFIRM = """
WITH wanted AS (
    SELECT g.id FROM signatures g
    WHERE g.receipt = ANY(%s) AND g.state = 'pending'
    ORDER BY g.receipt
    FOR UPDATE
)
UPDATE signatures g SET state = 'validated', confirmed_at = now()
FROM wanted WHERE g.id = wanted.id AND g.state = 'pending'
RETURNING g.receipt, g.petition_id
"""
STORED_STATES = "SELECT receipt, state FROM signatures WHERE receipt = ANY(%s)"
REJECTED_REASONS = "SELECT receipt, reason FROM rejected_signatures WHERE receipt = ANY(%s)"
RECORD_REFUSALS = """
INSERT INTO refused_confirmations (receipt, petition_id, reason)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[]) ORDER BY 1
ON CONFLICT (receipt) DO NOTHING
"""
# A pending signer signed again: send the email again, at most once per CONFIRM_RESEND_SECONDS
# (NULL puts the row back in the unsent backlog). `sig_staging` still holds the batch.
RESEND = """
UPDATE signatures g SET confirm_sent_at = NULL
FROM sig_staging s
WHERE s.receipt = ANY(%s) AND g.canonical_email = s.canonical_email AND g.petition_id = s.petition_id
  AND g.state = 'pending' AND g.confirm_sent_at < now() - make_interval(secs => %s)
"""


@dataclass
class ConfirmOutcome:
    confirmed: Counter[int] = field(default_factory=Counter)  # petition -> newly confirmed
    refused: Counter[str] = field(default_factory=Counter)  # reason -> confirmations
    repeated: int = 0  # already confirmed: nothing to do
    waiting: list[Entry] = field(default_factory=list)  # signature not stored yet: not acknowledged


def apply_confirmations(conn: Conn, confirmations: list[Confirmation], max_deliveries: int) -> ConfirmOutcome:
    """Confirm what can be confirmed, record what cannot, and hold back what must wait."""
    outcome = ConfirmOutcome()
    if not confirmations:
        return outcome
    by_receipt: dict[str, list[Confirmation]] = {}
    for confirmation in confirmations:
        by_receipt.setdefault(confirmation.receipt, []).append(confirmation)
    receipts = sorted(by_receipt)
    done = {str(r): int(p) for r, p in conn.execute(CONFIRM, [receipts])}  # type: ignore[call-overload]
    for petition_id in done.values():
        outcome.confirmed[petition_id] += 1
    rest = [r for r in receipts if r not in done]
    if not rest:
        return outcome
    states = {str(r): str(s) for r, s in conn.execute(STORED_STATES, [rest])}
    rest_unstored = [r for r in rest if r not in states]
    reasons = (
        {str(r): str(why) for r, why in conn.execute(REJECTED_REASONS, [rest_unstored])}
        if rest_unstored
        else {}
    )
    refusals: list[tuple[str, int, str]] = []
    for receipt in rest:
        state = states.get(receipt)
        first = by_receipt[receipt][0]
        if state == "validated":
            outcome.repeated += len(by_receipt[receipt])
        elif state is not None:  # invalidated, fraudulent: never counted by a click
            refusals.append((receipt, first.petition_id, state))
        elif receipt in reasons:
            refusals.append((receipt, first.petition_id, reasons[receipt]))
        elif max(c.entry.deliveries for c in by_receipt[receipt]) >= max_deliveries:
            refusals.append((receipt, first.petition_id, "unknown"))
        else:
            outcome.waiting.extend(c.entry for c in by_receipt[receipt])
    if refusals:
        columns = [list(column) for column in zip(*refusals, strict=True)]
        conn.execute(RECORD_REFUSALS, columns)
        outcome.refused.update(reason for *_, reason in refusals)
    return outcome


def request_resends(conn: Conn, duplicate_receipts: list[str], resend_seconds: float) -> None:
    """Owe the confirmation email again to pending signers who signed again (see RESEND)."""
    if duplicate_receipts:
        conn.execute(RESEND, [duplicate_receipts, resend_seconds])
