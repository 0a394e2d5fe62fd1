"""The scheduled jobs' bodies, given settings: what the beat tasks and the CLI both run."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.drain.abuse import policy_from_settings
from worker.integrity.db import connect, settle
from worker.integrity.reconcile import Drift, reconcile
from worker.integrity.suspicious import SuspicionRules, find_suspicious
from worker.observability.suspicious_report import SuspiciousReport, publish_report
from worker.pipeline.abuse import parse_domains
from worker.runtime import Runtime
from worker.settings import Settings


def suspicion_rules(settings: Settings) -> SuspicionRules:
    policy = policy_from_settings(settings)
    return SuspicionRules(
        share=settings.suspicious_share,
        min_signatures=settings.suspicious_min_signatures,
        ignored_domains=parse_domains(settings.suspicious_ignore_domains) | policy.allowed_domains,
        allowed_ip_hashes=policy.allowed_ip_hashes,
    )


def report_suspicious_signatures(rt: Runtime, now: datetime | None = None) -> SuspiciousReport:
    """ReportSuspiciousSignatures: the last hour's findings, logged, measured and kept for stats."""
    with connect(rt.settings.libpq_url) as conn:
        report = find_suspicious(conn, now or datetime.now(UTC), suspicion_rules(rt.settings))
    publish_report(rt.redis, rt.keys, report)
    return report


def reconcile_signature_counts(rt: Runtime, *, fix: bool) -> list[Drift]:
    """ReconcileSignatureCounts: report every drift; with `fix`, repair and publish it."""
    with connect(rt.settings.libpq_url) as conn:
        drifts = reconcile(conn, fix=fix, publish=rt.registry.set_counts)
        repaired = [d.petition_id for d in drifts if d.fixed and d.actual < d.recorded]
        settle(conn, repaired, rt.registry.set_counts, rt.settings.count_settle_seconds)
    return drifts
