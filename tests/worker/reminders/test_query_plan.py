"""Prospect selection stays an index walk with 1,000,000 signatures (rows made by generate_series).

The plans are written to test-artifacts/reminders-query-plan.txt; docs/reminders-query-plan.md
shows a run with the full million. Filling a million rows takes minutes on a shared 2-core machine,
so the suite uses 200,000 unless REMINDERS_PLAN_SIGNATURES says otherwise:
`REMINDERS_PLAN_SIGNATURES=1000000 .venv/bin/python -m pytest tests/worker/reminders/test_query_plan.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from worker.reminders import store

pytestmark = pytest.mark.slow

SIGNATURES = int(os.environ.get("REMINDERS_PLAN_SIGNATURES", "200000"))
PETITIONS = 1_000
PEOPLE = 300_007  # coprime with PETITIONS: (petition, person) pairs never repeat below 300 million rows

FILL = f"""
INSERT INTO petitions (id, slug, title, starter_name, status)
SELECT g, 'p-' || g, 'Petition ' || g, 'Starter ' || g, CASE WHEN g % 10 = 0 THEN 'closed' ELSE 'open' END
FROM generate_series(1, {PETITIONS}) g;
SELECT setval('petitions_id_seq', {PETITIONS});
INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, opt_in, state, accepted_at)
SELECT g % {PETITIONS} + 1, 'r' || g, 'u' || g % {PEOPLE} || '@example.org',
       'u' || g % {PEOPLE} || '@example.org', 'Person ' || g % {PEOPLE}, g % 3 <> 0, 'validated',
       now() - make_interval(secs => g % 259200)
FROM generate_series(1, {SIGNATURES}) g;
UPDATE petitions p SET signature_count = c.n
FROM (SELECT petition_id, count(*) n FROM signatures GROUP BY 1) c WHERE c.petition_id = p.id;
-- Petition 1 already reminded 100,000 people (the walk must skip them), 5,000 people unsubscribed
INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id, status, recorded_at)
SELECT 1, 'u' || g || '@example.org', 'old', 'sent', now() - interval '30 days'
FROM generate_series(1, 100000) g;
INSERT INTO unsubscribes (canonical_email, unsubscribed_at)
SELECT 'u' || g * 7 || '@example.org', now() FROM generate_series(1, 5000) g;
VACUUM ANALYZE petitions;
VACUUM ANALYZE signatures;
VACUUM ANALYZE reminder_deliveries;
VACUUM ANALYZE unsubscribes;
"""


def explain(conn: psycopg.Connection[tuple[object, ...]], sql: str, params: dict[str, object]) -> str:
    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def test_prospects_and_eligible_petitions_use_their_indexes_with_many_signatures(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in FILL.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        page = store.prospect_params(1, "", 500, 7 * 86_400.0, "run")
        prospects = explain(conn, store.PROSPECTS, page)
        deep = explain(conn, store.PROSPECTS, {**page, "after": "u5"})
        eligible = explain(conn, store.ELIGIBLE_PETITIONS, {"min_recent": 10})
        chosen = store.prospects(conn, 1, "", 500, 7 * 86_400.0)
        # An idle petition's run: only the last 10,000 signatures (the INSERT is rolled back)
        newest = {**page, "after_id": SIGNATURES - 10_000, "until_id": SIGNATURES}
        with conn.transaction(force_rollback=True):
            idle = explain(conn, store.RECORD_NEW_PAGE, newest)

    report = (
        f"PROSPECTS, first page:\n{prospects}\n\nPROSPECTS, a later page:\n{deep}\n\n"
        f"ELIGIBLE:\n{eligible}\n\nRECORD_NEW_PAGE, an idle petition:\n{idle}\n"
    )
    Path("test-artifacts").mkdir(exist_ok=True)
    Path("test-artifacts/reminders-query-plan.txt").write_text(report)

    assert len(chosen) == 500
    for plan in (prospects, deep):
        assert "Index Scan using signatures_reminder_prospects on signatures s" in plan, plan
        assert "Seq Scan on signatures" not in plan and "Sort" not in plan.split("->")[1], plan
        assert "reminder_deliveries_once" in plan and "unsubscribes_pkey" in plan, plan
    assert "signatures_petition_accepted" in eligible and "Seq Scan on signatures" not in eligible, eligible
    assert (
        "Index Scan using signatures_pkey on signatures s" in idle and "Seq Scan on signatures" not in idle
    ), idle
