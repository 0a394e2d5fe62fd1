"""The latest suspicious-share report, kept in Redis by the hourly integrity job
(`worker/integrity/suspicious.py`) and read by `sigingest stats` and the
`sigingest_suspicious_petitions` gauge. Apart from the job so that readers (the intake's
/metrics among them) never import the database side."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
import redis

from worker.drain.streams import translated
from worker.keys import Keys

log = logging.getLogger("sigingest.suspicious")

REPORT_TTL_SECONDS = 7 * 86_400


@dataclass(frozen=True)
class Finding:
    petition_id: int
    kind: str  # "ip" (value: the keyed IP hash) or "domain" (value: the email domain)
    value: str
    signatures: int
    total: int

    @property
    def share(self) -> float:
        return self.signatures / self.total


@dataclass(frozen=True)
class SuspiciousReport:
    since: datetime
    until: datetime
    findings: list[Finding] = field(default_factory=list)


def publish_report(client: redis.Redis, keys: Keys, report: SuspiciousReport) -> None:
    """Log each finding (no personal data) and keep the report for `sigingest stats` and the
    `sigingest_suspicious_petitions` gauge (computed from it at scrape time, in
    worker/observability/queue_stats.py)."""
    for f in report.findings:
        log.warning(
            "suspicious share on petition %d: one %s sent %d of %d signatures (%.0f%%) in the hour to %s",
            f.petition_id,
            "hashed IP" if f.kind == "ip" else "email domain",
            f.signatures,
            f.total,
            100 * f.share,
            report.until.isoformat(timespec="minutes"),
        )
    with translated():
        client.set(keys.suspicious_report, orjson.dumps(asdict(report)), ex=REPORT_TTL_SECONDS)


def latest_report(client: redis.Redis, keys: Keys) -> SuspiciousReport | None:
    """The last hourly report, for `sigingest stats`; None before the first run."""
    with translated():
        raw: Any = client.get(keys.suspicious_report)
    if not raw:
        return None
    data = orjson.loads(raw)
    return SuspiciousReport(
        datetime.fromisoformat(data["since"]),
        datetime.fromisoformat(data["until"]),
        [Finding(**f) for f in data["findings"]],
    )
