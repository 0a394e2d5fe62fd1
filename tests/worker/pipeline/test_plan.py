"""The pure batch planner: no Redis, no PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import Entry, encode, encode_confirmation
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import (
    PetitionState,
    Reject,
    Row,
    check_petitions,
    one_counted_per_person,
    plan_batch,
)

NOW_MS = 1_790_000_000_000


def entry(n: int, email: str, name: str = "Ann", petition: int = 1, receipt: str | None = None) -> Entry:
    payload = encode(receipt or f"r{n}", petition, NOW_MS, "iphash", SignatureFields(email, name))
    return Entry(shard=0, entry_id=f"{n}-0", payload=payload)


def test_a_clean_batch_becomes_rows() -> None:
    plan = plan_batch([entry(1, "a@example.org"), entry(2, "b@example.org")], EmailChecker())
    assert [r.receipt for r in plan.rows] == ["r1", "r2"]
    assert plan.rejects == [] and plan.poison == []
    assert len(plan.done_entries()) == 2


def test_duplicates_inside_a_batch_are_rejected_as_duplicate_keeping_the_first() -> None:
    batch = [entry(1, "Ann.Lee@gmail.com"), entry(2, "annlee+x@googlemail.com"), entry(3, "ANNLEE@gmail.com")]
    plan = plan_batch(batch, EmailChecker())
    assert [r.receipt for r in plan.rows] == ["r1"]
    assert [(r.receipt, r.reason) for r in plan.rejects] == [("r2", "duplicate"), ("r3", "duplicate")]


def test_the_same_person_on_two_petitions_is_not_a_duplicate() -> None:
    plan = plan_batch(
        [entry(1, "a@example.org", petition=1), entry(2, "a@example.org", petition=2)], EmailChecker()
    )
    assert len(plan.rows) == 2


def test_a_bad_entry_next_to_good_ones_does_not_spoil_the_batch() -> None:
    bad_name = entry(2, "b@example.org", name="Bad\x00Name")
    undecodable = Entry(shard=0, entry_id="3-0", payload=b"\xff\xfe not json")
    invalid_email = entry(4, "nobody@localhost")
    plan = plan_batch(
        [entry(1, "a@example.org"), bad_name, undecodable, invalid_email, entry(5, "e@example.org")],
        EmailChecker(),
    )
    assert [r.receipt for r in plan.rows] == ["r1", "r5"]
    assert {(r.receipt, r.reason) for r in plan.rejects} == {("r2", "invalid_field"), ("r4", "invalid_email")}
    assert [p.entry.entry_id for p in plan.poison] == ["3-0"]
    assert "3-0" not in {e.entry_id for e in plan.done_entries()}


def test_names_in_any_script_and_emoji_are_kept() -> None:
    names = ["محمد الأحمد", "שרה כהן", "Zoë 👩🏽‍🔬", "李小龍", "O'Brien-Smith"]
    plan = plan_batch(
        [entry(n, f"p{n}@example.org", name=name) for n, name in enumerate(names)], EmailChecker()
    )
    assert [r.name for r in plan.rows] == names


def test_a_payload_that_is_not_the_schema_is_poison() -> None:
    odd = [b"[]", b'{"r": 5}', b'{"r": "x", "p": "1", "t": 1, "f": {}}', b"", b'{"r":"x","p":1,"t":1,"f":[]}']
    plan = plan_batch([Entry(0, f"{i}-0", p) for i, p in enumerate(odd)], EmailChecker())
    assert len(plan.poison) == len(odd) and plan.rows == []


def test_fields_that_break_the_rules_are_rejected_as_invalid_field() -> None:
    raw = b'{"r":"r9","p":1,"t":1790000000000,"f":{"email":"a@example.org","name":7}}'
    plan = plan_batch([Entry(0, "9-0", raw)], EmailChecker())
    assert [(r.receipt, r.reason) for r in plan.rejects] == [("r9", "invalid_field")]
    assert "name" in (plan.rejects[0].detail or "")


def test_petition_checks_refuse_unknown_and_closed_but_keep_signatures_accepted_before_closing() -> None:
    plan = plan_batch(
        [
            entry(1, "a@example.org", petition=1),
            entry(2, "b@example.org", petition=2),
            entry(3, "c@example.org", petition=3),
            entry(4, "d@example.org", petition=4),
        ],
        EmailChecker(),
    )
    accepted = plan.rows[0].accepted_at
    states = {
        1: PetitionState("open", None),
        2: PetitionState("closed", datetime(2020, 1, 1, tzinfo=UTC)),  # closed before acceptance
        4: PetitionState("victory", datetime.fromtimestamp(accepted.timestamp() + 60, UTC)),  # after
    }
    kept, rejects = check_petitions(plan.rows, states)
    assert [r.petition_id for r in kept] == [1, 4]
    assert {(r.petition_id, r.reason) for r in rejects} == {(2, "petition_closed"), (3, "unknown_petition")}


def test_an_uncounted_entry_never_takes_the_persons_place_in_the_batch() -> None:
    # Given a honeypot entry for Ann, then Ann's own, then Ann once more and a honeypot entry again
    honeypot = encode(
        "hp", 1, 1_790_000_000_000, None, SignatureFields("ann@example.org", "Bot"), honeypot=True
    )
    late = encode("hp2", 1, 1_790_000_000_009, None, SignatureFields("ann@example.org", "Bot"), honeypot=True)
    batch = [
        Entry(0, "0-1", honeypot),
        entry(2, "Ann@example.org"),
        entry(3, "ann@example.org"),
        Entry(0, "0-9", late),
    ]
    plan = plan_batch(batch, EmailChecker())
    # Then the honeypot row and Ann's are stored; the two after Ann's counted one are duplicates
    assert [(r.receipt, r.state) for r in plan.rows] == [("hp", "fraudulent"), ("r2", "validated")]
    assert sorted(r.receipt for r in plan.rejects if r.reason == "duplicate") == ["hp2", "r3"]


def test_rows_the_judge_marks_fraudulent_do_not_take_the_place_either() -> None:
    def first_is_fraudulent(rows: list[Row]) -> list[Row]:
        return [rows[0]._replace(state="fraudulent"), *rows[1:]]

    plan = plan_batch(
        [entry(1, "bo@example.org"), entry(2, "bo@example.org")], EmailChecker(), first_is_fraudulent
    )
    assert [(r.receipt, r.state) for r in plan.rows] == [("r1", "fraudulent"), ("r2", "validated")]
    assert plan.rejects == []


def test_a_pending_row_holds_the_persons_place_and_a_fraudulent_one_does_not() -> None:
    # Given, for one person, a fraudulent row, then a pending one, then a validated and a pending one
    at = datetime(2026, 12, 8, tzinfo=UTC)
    rows = [
        Row(receipt, 1, "ann@example.org", "ann@example.org", "Ann", None, None, False, None, at, state)
        for receipt, state in [("f", "fraudulent"), ("p1", "pending"), ("v", "validated"), ("p2", "pending")]
    ]
    rejects: list[Reject] = []
    # Then the fraudulent row and the first pending one are kept; the two after it are duplicates
    kept = one_counted_per_person(rows, rejects)
    assert [r.receipt for r in kept] == ["f", "p1"]
    assert [(r.receipt, r.reason) for r in rejects] == [("v", "duplicate"), ("p2", "duplicate")]


def test_a_confirmation_entry_is_planned_as_a_confirmation_beside_signatures_and_poison() -> None:
    # Given a batch with a signature, a confirmation of another receipt, and junk
    confirmation = Entry(0, "0-2", encode_confirmation("r9", 1, 1_790_000_000_000))
    junk = Entry(0, "0-3", b'{"k": "c", "r": 7}')
    plan = plan_batch([entry(1, "ann@example.org"), confirmation, junk], EmailChecker())
    # Then the signature is a row, the confirmation is planned, and only the junk is poison
    assert [r.receipt for r in plan.rows] == ["r1"]
    assert [(c.receipt, c.petition_id, c.entry) for c in plan.confirmations] == [("r9", 1, confirmation)]
    assert [p.entry for p in plan.poison] == [junk]
    assert plan.done_entries() == plan.entries[:2]
