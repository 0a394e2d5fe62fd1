"""The hourly suspicious-share report: petitions where one hashed IP or one email domain sent
at least `SUSPICIOUS_SHARE` of the signatures stored in the last hour (any state).

Logged without personal data (petition id, kind, sizes; never the IP hash or the domain),
exported as a gauge, and kept in Redis for `sigingest stats` (`latest_report`). Common webmail
domains (`SUSPICIOUS_IGNORE_DOMAINS`), allowed domains and allowed IPs are not reported.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import redis

from worker.integrity.db import Conn, num
from worker.keys import Keys
from worker.pipeline.abuse import in_domains
from worker.streams import translated

log = logging.getLogger("sigingest.suspicious")

WINDOW = timedelta(hours=1)
REPORT_TTL_SECONDS = 7 * 86_400

# Per petition with enough recent signatures: the sources (hashed IP, email domain) holding at
# least the given share of them. The join from petitions uses the (petition_id, accepted_at) index.
FIND_SUSPICIOUS = """
WITH recent AS (
    SELECT s.petition_id, s.ip_hash, split_part(s.canonical_email, '@', 2) AS domain
    FROM petitions p JOIN signatures s ON s.petition_id = p.id
    WHERE s.accepted_at >= %(since)s AND s.accepted_at < %(until)s AND s.receipt NOT LIKE 'starter-%%'
), totals AS (
    SELECT petition_id, count(*) AS total FROM recent GROUP BY petition_id HAVING count(*) >= %(min)s
), sources AS (
    SELECT petition_id, 'ip' AS kind, ip_hash AS value, count(*) AS n FROM recent
    WHERE ip_hash IS NOT NULL GROUP BY petition_id, ip_hash
    UNION ALL
    SELECT petition_id, 'domain', domain, count(*) FROM recent WHERE domain <> '' GROUP BY petition_id, domain
)
SELECT t.petition_id, s.kind, s.value, s.n, t.total FROM totals t JOIN sources s USING (petition_id)
WHERE s.n >= %(share)s * t.total
ORDER BY t.petition_id, s.kind, s.n DESC
"""


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
class SuspicionRules:
    share: float = 0.5
    min_signatures: int = 20
    ignored_domains: frozenset[str] = frozenset()  # webmail and allowed domains (with subdomains)
    allowed_ip_hashes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SuspiciousReport:
    since: datetime
    until: datetime
    findings: list[Finding] = field(default_factory=list)


def find_suspicious(conn: Conn, until: datetime, rules: SuspicionRules) -> SuspiciousReport:
    """The findings for the hour before `until`."""
    since = until - WINDOW
    params = {"since": since, "until": until, "min": rules.min_signatures, "share": rules.share}
    findings = [
        Finding(num(p), str(k), str(v), num(n), num(t))
        for p, k, v, n, t in conn.execute(FIND_SUSPICIOUS, params)
    ]
    kept = [f for f in findings if not _ignored(f, rules)]
    return SuspiciousReport(since, until, kept)


def _ignored(finding: Finding, rules: SuspicionRules) -> bool:
    if finding.kind == "ip":
        return finding.value in rules.allowed_ip_hashes
    return in_domains(finding.value, rules.ignored_domains)


def publish_report(client: redis.Redis, keys: Keys, report: SuspiciousReport) -> None:
    """Log each finding (no personal data) and keep the report for `sigingest stats` and the
    `sigingest_suspicious_petitions` gauge (computed from it at scrape time, worker/queue_stats.py)."""
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
