"""Every metric name we export, declared once, with what it counts.

Prometheus conventions: counters end in `_total`, durations are `_seconds`, sizes `_bytes`,
base units only. Labels never carry personal data (no email, name or address) and have a small,
fixed set of values. `deploy/` (Grafana dashboard, alert rules) may only name series from
`SERIES`; a test checks it.

The metric objects are built per process from these names (`IntakeMetrics`, `WorkerMetrics`),
each in its own `CollectorRegistry`, so tests read exact values and a forked worker child writes
to its own multiprocess file.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double every scrape's size and no panel uses them

# --- intake (api_stub), one set per intake process ---
# HTTP requests answered, by route template (never the raw path) and status code.
INTAKE_REQUESTS: Final = "sigingest_intake_requests_total"
# Time from request start to the last response byte, by route template.
INTAKE_REQUEST_DURATION: Final = "sigingest_intake_request_duration_seconds"
# Request body bytes received, by route template.
INTAKE_REQUEST_BYTES: Final = "sigingest_intake_request_bytes_total"
# Response body bytes sent, by route template.
INTAKE_RESPONSE_BYTES: Final = "sigingest_intake_response_bytes_total"
# Redis calls from the intake that failed (connection, timeout, OOM); each one answered 503.
INTAKE_REDIS_ERRORS: Final = "sigingest_intake_redis_errors_total"

# --- workers, summed over every prefork child of a worker host ---
# Batches processed (written, acknowledged, published), including redelivered ones that changed nothing.
WORKER_BATCHES: Final = "sigingest_worker_batches_total"
# Signatures by what the worker did with them: persisted (counted), uncounted (stored, e.g.
# fraudulent), duplicate, rejected, dead_lettered, retried (failed, left pending for redelivery).
WORKER_SIGNATURES: Final = "sigingest_worker_signatures_total"
# Rejected signatures by reason (invalid_email, unknown_petition, petition_closed, invalid_field).
WORKER_REJECTED: Final = "sigingest_worker_rejected_signatures_total"
# Entries per batch.
WORKER_BATCH_SIZE: Final = "sigingest_worker_batch_size_entries"
# Time to plan, write, acknowledge and publish one batch.
WORKER_BATCH_DURATION: Final = "sigingest_worker_batch_duration_seconds"
# Attempts to write a batch that PostgreSQL did not answer or aborted (deadlock, server gone).
WORKER_DATABASE_ERRORS: Final = "sigingest_worker_database_errors_total"
# Backoffs of the drain loop before retrying a batch, by cause (database, redis).
WORKER_RETRIES: Final = "sigingest_worker_retries_total"
# Reminder emails by outcome (sent, failed); incremented by the reminders task.
REMINDER_EMAILS: Final = "sigingest_reminder_emails_total"
# Confirmation emails by outcome (sent, reminded, failed); incremented by the confirmations task.
CONFIRM_EMAILS: Final = "sigingest_confirm_emails_total"
# Signatures of email-confirmation petitions by event (pending: stored awaiting confirmation,
# confirmed: counted by a click, refused: a click for an expired, erased or unknown signature).
WORKER_CONFIRMATIONS: Final = "sigingest_worker_confirmations_total"

# --- queue, computed from Redis at scrape time by any instance (worker/observability/queue_stats.py) ---
# Entries in a shard's stream (queued, in flight, and acknowledged but not yet trimmed).
QUEUE_STREAM_LENGTH: Final = "sigingest_queue_stream_length_entries"
# Entries delivered to a consumer and not yet acknowledged, per shard.
QUEUE_PENDING: Final = "sigingest_queue_pending_entries"
# Entries not yet delivered to any consumer, per shard.
QUEUE_UNDELIVERED: Final = "sigingest_queue_undelivered_entries"
# Age of the oldest pending (delivered, unacknowledged) entry, per shard; 0 when none.
QUEUE_OLDEST_PENDING_AGE: Final = "sigingest_queue_oldest_pending_age_seconds"
# Lag: age of the oldest entry not yet acknowledged (pending or undelivered), per shard; 0 when none.
QUEUE_LAG: Final = "sigingest_queue_lag_seconds"
# Consumers registered in the shard's consumer group (one per worker process that ever read it).
QUEUE_CONSUMERS: Final = "sigingest_queue_consumers"
# Entries in the dead-letter stream: each needs an operator's look.
QUEUE_DEAD_LETTERS: Final = "sigingest_queue_dead_letter_entries"
# Pending signatures whose confirmation email is not sent yet, as the last confirmations run saw it.
CONFIRM_EMAILS_OWED: Final = "sigingest_confirm_emails_owed"
# 1 when the last scrape could read Redis, 0 when it could not.
QUEUE_UP: Final = "sigingest_queue_up"
# Petitions whose last-hour signatures came over a suspicious share from one hashed IP or one email
# domain, by kind (ip, domain), from the last hourly report (worker/integrity/suspicious.py).
SUSPICIOUS_PETITIONS: Final = "sigingest_suspicious_petitions"

# Outcomes of WORKER_SIGNATURES and REMINDER_EMAILS, fixed so labels stay bounded.
SIGNATURE_OUTCOMES: Final = ("persisted", "uncounted", "duplicate", "rejected", "dead_lettered", "retried")
REMINDER_OUTCOMES: Final = ("sent", "failed")

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000)
BATCH_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COUNTERS: Final = (
    INTAKE_REQUESTS,
    INTAKE_REQUEST_BYTES,
    INTAKE_RESPONSE_BYTES,
    INTAKE_REDIS_ERRORS,
    WORKER_BATCHES,
    WORKER_SIGNATURES,
    WORKER_REJECTED,
    WORKER_DATABASE_ERRORS,
    WORKER_RETRIES,
    REMINDER_EMAILS,
    CONFIRM_EMAILS,
    WORKER_CONFIRMATIONS,
)
HISTOGRAMS: Final = (INTAKE_REQUEST_DURATION, WORKER_BATCH_SIZE, WORKER_BATCH_DURATION)
GAUGES: Final = (
    QUEUE_STREAM_LENGTH,
    QUEUE_PENDING,
    QUEUE_UNDELIVERED,
    QUEUE_OLDEST_PENDING_AGE,
    QUEUE_LAG,
    QUEUE_CONSUMERS,
    QUEUE_DEAD_LETTERS,
    CONFIRM_EMAILS_OWED,
    QUEUE_UP,
    SUSPICIOUS_PETITIONS,
)
# Every series name a scrape can show (histograms expand to _bucket/_sum/_count).
SERIES: Final = frozenset(
    [*COUNTERS, *GAUGES, *(f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count"))]
)


def _counter_name(name: str) -> str:
    """prometheus-client adds `_total` itself; it wants the name without it."""
    return name.removesuffix("_total")


class IntakeMetrics:
    """The intake's metrics, in their own registry (served at the intake's `/metrics`).

    The request series (INTAKE_REQUESTS, INTAKE_REQUEST_DURATION, INTAKE_*_BYTES) and
    INTAKE_REDIS_ERRORS are kept as plain tallies on the hot path (api_stub/metrics/tallies.py) and
    exported by `api_stub.metrics.observe.RequestCollector`, summed over the intake's processes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()


class WorkerMetrics:
    """A worker process's metrics. Under prefork every child has its own; with
    `worker/observability/metrics_server.py` in charge they land in files the worker host's endpoint sums."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batches = Counter(_counter_name(WORKER_BATCHES), "batches processed", registry=r)
        self.signatures = Counter(
            _counter_name(WORKER_SIGNATURES), "signatures by outcome", ["outcome"], registry=r
        )
        self.rejected = Counter(_counter_name(WORKER_REJECTED), "rejects by reason", ["reason"], registry=r)
        self.batch_size = Histogram(
            WORKER_BATCH_SIZE, "entries per batch", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_duration = Histogram(
            WORKER_BATCH_DURATION, "batch duration", buckets=BATCH_DURATION_BUCKETS, registry=r
        )
        self.database_errors = Counter(
            _counter_name(WORKER_DATABASE_ERRORS), "failed batch writes", registry=r
        )
        self.retries = Counter(_counter_name(WORKER_RETRIES), "drain backoffs", ["cause"], registry=r)
        self.reminder_emails = Counter(
            _counter_name(REMINDER_EMAILS), "reminder emails by outcome", ["outcome"], registry=r
        )
        self.confirm_emails = Counter(
            _counter_name(CONFIRM_EMAILS), "confirmation emails by outcome", ["outcome"], registry=r
        )
        self.confirmations = Counter(
            _counter_name(WORKER_CONFIRMATIONS), "email confirmations by event", ["event"], registry=r
        )
        for outcome in ("sent", "reminded", "failed"):
            self.confirm_emails.labels(outcome)
        for event in ("pending", "confirmed", "refused"):
            self.confirmations.labels(event)
        for outcome in SIGNATURE_OUTCOMES:
            self.signatures.labels(outcome)  # export zeros, so rate() and alerts see the series
        for outcome in REMINDER_OUTCOMES:
            self.reminder_emails.labels(outcome)
