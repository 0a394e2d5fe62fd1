"""The honeypot flag in the entry format and the planner: a bot's form post is stored fraudulent."""

from __future__ import annotations

import orjson

from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import Entry, decode, encode
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import plan_batch

NOW_MS = 1_790_000_000_000
FIELDS = SignatureFields("a@example.org", "Ann")


def test_an_entry_without_the_flag_is_written_as_before_and_decodes_as_not_honeypot() -> None:
    payload = encode("r1", 1, NOW_MS, "iphash", FIELDS)
    assert "hp" not in orjson.loads(payload)
    assert decode(Entry(0, "1-0", payload)).honeypot is False


def test_the_flag_round_trips() -> None:
    payload = encode("r1", 1, NOW_MS, None, FIELDS, honeypot=True)
    assert orjson.loads(payload)["hp"] == 1
    assert decode(Entry(0, "1-0", payload)).honeypot is True


def test_a_flagged_signature_is_planned_as_a_fraudulent_row_and_a_plain_one_as_validated() -> None:
    bot = Entry(0, "1-0", encode("r1", 1, NOW_MS, None, FIELDS, honeypot=True))
    person = Entry(0, "2-0", encode("r2", 1, NOW_MS, None, SignatureFields("b@example.org", "Bo")))
    plan = plan_batch([bot, person], EmailChecker())
    assert [(r.receipt, r.state) for r in plan.rows] == [("r1", "fraudulent"), ("r2", "validated")]
    assert plan.rejects == [] and plan.poison == []


def test_a_flag_other_than_0_or_1_is_not_what_the_intake_writes() -> None:
    body = orjson.loads(encode("r1", 1, NOW_MS, None, FIELDS))
    for odd in ("yes", 2, True):
        plan = plan_batch([Entry(0, "1-0", orjson.dumps({**body, "hp": odd}))], EmailChecker())
        assert len(plan.poison) == 1 and plan.rows == []
