"""The hourly suspicious-share report: petitions where one hashed IP or one email domain sent
at least `SUSPICIOUS_SHARE` of the signatures stored in the last hour (any state).

Logged without personal data (petition id, kind, sizes; never the IP hash or the domain),
exported as a gauge, and kept in Redis for `sigingest stats` (`latest_report`). Common webmail
domains (`SUSPICIOUS_IGNORE_DOMAINS`), allowed domains and allowed IPs are not reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.integrity.db import Conn, num
from worker.observability.suspicious_report import Finding, SuspiciousReport
from worker.pipeline.abuse import in_domains

log = logging.getLogger("sigingest.suspicious")

WINDOW = timedelta(hours=1)

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
class SuspicionRules:
    share: float = 0.5
    min_signatures: int = 20
    ignored_domains: frozenset[str] = frozenset()  # webmail and allowed domains (with subdomains)
    allowed_ip_hashes: frozenset[str] = frozenset()


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
