"""The hourly suspicious-share report, the beat schedule, and the job bodies behind it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import PetitionFactory
from tests.worker.integrity.helpers import DB, add_signatures
from worker.integrity.jobs import reconcile_signature_counts, report_suspicious_signatures
from worker.integrity.suspicious import SuspicionRules, find_suspicious
from worker.observability.queue_stats import suspicious_family
from worker.observability.suspicious_report import Finding, latest_report
from worker.runtime import Runtime

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
RECENT = NOW - timedelta(minutes=30)
RULES = SuspicionRules(share=0.5, min_signatures=20, ignored_domains=frozenset({"gmail.com"}))


def test_one_ip_or_one_domain_holding_half_the_last_hour_is_reported(
    make_petition: PetitionFactory, db: DB
) -> None:
    by_ip, by_domain, webmail, small = (make_petition(title=t) for t in ("ip", "domain", "webmail", "small"))
    add_signatures(db, by_ip.id, 20, tag="ip", ip_hash="aa11", domain="gmail.com", accepted_at=RECENT)
    add_signatures(db, by_ip.id, 10, tag="ipo", domain="a.example", accepted_at=RECENT)
    add_signatures(db, by_ip.id, 50, tag="ipold", ip_hash="aa11", accepted_at=NOW - timedelta(hours=2))
    add_signatures(db, by_domain.id, 16, tag="d", domain="corp.example", accepted_at=RECENT)
    add_signatures(db, by_domain.id, 14, tag="do", domain="b.example", accepted_at=RECENT)
    add_signatures(db, webmail.id, 30, tag="w", domain="gmail.com", accepted_at=RECENT)
    add_signatures(db, small.id, 19, tag="s", ip_hash="bb22", accepted_at=RECENT)

    report = find_suspicious(db, NOW, RULES)

    assert report.findings == [
        Finding(by_ip.id, "ip", "aa11", 20, 30),
        Finding(by_domain.id, "domain", "corp.example", 16, 30),
    ]
    assert report.since == NOW - timedelta(hours=1)


def test_allowed_sources_are_not_reported(make_petition: PetitionFactory, db: DB) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 25, tag="u", ip_hash="cafe", domain="cs.ox.ac.uk", accepted_at=RECENT)
    rules = SuspicionRules(ignored_domains=frozenset({"ox.ac.uk"}), allowed_ip_hashes=frozenset({"cafe"}))
    assert find_suspicious(db, NOW, rules).findings == []


def test_the_hourly_job_logs_without_personal_data_sets_the_gauge_and_keeps_the_report(
    make_petition: PetitionFactory, db: DB, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    petition = make_petition()
    add_signatures(
        db, petition.id, 25, tag="x", ip_hash="deadbeef", domain="private-family.example", accepted_at=RECENT
    )
    assert latest_report(rt.redis, rt.keys) is None
    with caplog.at_level(logging.INFO):
        report = report_suspicious_signatures(rt, NOW)
    assert {f.kind for f in report.findings} == {"ip", "domain"}
    assert f"suspicious share on petition {petition.id}" in caplog.text
    assert "deadbeef" not in caplog.text and "private-family" not in caplog.text and "@" not in caplog.text
    [ip] = [sample for sample in suspicious_family(report).samples if sample.labels == {"kind": "ip"}]
    assert ip.value == 1
    assert latest_report(rt.redis, rt.keys) == report  # what `sigingest stats` shows


def test_the_nightly_job_repairs_drift_and_both_jobs_are_on_the_beat_schedule(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    petition = make_petition()
    db.execute("UPDATE petitions SET signature_count = 40 WHERE id = %s", [petition.id])
    quick = Runtime(rt.settings.model_copy(update={"count_settle_seconds": 0.0}))
    try:
        drifts = reconcile_signature_counts(quick, fix=True)
    finally:
        quick.redis.close()
    assert [(d.petition_id, d.recorded, d.actual, d.fixed) for d in drifts] == [(petition.id, 40, 1, True)]
    assert rt.registry.get(petition.id).signature_count == 1  # type: ignore[union-attr]

    from worker.celery import app
    from worker.integrity import tasks

    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"integrity.report_suspicious", "integrity.reconcile_counts"} <= schedule
    assert tasks.report_suspicious.name in app.tasks and tasks.reconcile_counts.name in app.tasks


def test_the_suspicious_command_lists_findings_for_the_operator(
    make_petition: PetitionFactory, db: DB, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.ops.cli import main

    petition = make_petition()
    assert main(["suspicious"]) == 0
    assert "no petition" in capsys.readouterr().out
    add_signatures(db, petition.id, 25, tag="n", ip_hash="f00d", domain="gmail.com")  # accepted now
    assert main(["suspicious"]) == 0
    assert f"petition {petition.id}: ip f00d sent 25 of 25 (100%)" in capsys.readouterr().out


def test_sigingest_stats_shows_the_last_suspicious_report(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    from worker.observability.stats import gather

    petition = make_petition()
    add_signatures(db, petition.id, 25, tag="x", ip_hash="deadbeef", domain="one.example", accepted_at=RECENT)
    assert gather(rt.redis, rt.keys, NOW.timestamp()).as_dict()["suspicious"] == []
    report_suspicious_signatures(rt, NOW)
    shown = gather(rt.redis, rt.keys, NOW.timestamp()).as_dict()["suspicious"]
    assert {(f["petition_id"], f["kind"], f["value"]) for f in shown} == {
        (petition.id, "ip", "deadbeef"),
        (petition.id, "domain", "one.example"),
    }
