"""The pure batch planner: no Redis, no PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import PetitionState, check_petitions, plan_batch

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
