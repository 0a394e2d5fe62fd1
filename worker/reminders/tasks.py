"""`reminders.send_due`: the beat-scheduled run, on the `reminders` queue (routed in
worker/scheduling/app.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from worker.keys import Keys
from worker.reminders.confirmations import send_confirmations
from worker.reminders.run import RunReport, send_due
from worker.runtime import runtime
from worker.scheduling.app import app, settings

# Follow-ups wait at most this long: Celery's Redis transport redelivers ETA tasks that wait past
# its visibility timeout (an hour by default), so a longer countdown would run more than once.
MAX_FOLLOW_UP_SECONDS = 900.0


@app.task(name="reminders.send_due")  # type: ignore[untyped-decorator]
def send_due_task() -> dict[str, Any]:
    """One run (a no-op when another holds the lock); queues one follow-up for due retries."""
    rt = runtime(settings)
    report = send_due(settings, rt.redis)
    rt.metrics.reminder_emails.labels("sent").inc(report.sent)
    rt.metrics.reminder_emails.labels("failed").inc(report.failed)
    schedule_follow_up(
        report,
        rt.redis,
        rt.keys,
        settings.reminder_every,
        lambda delay: send_due_task.apply_async(countdown=delay),
    )
    return report.summary()


def schedule_follow_up(
    report: RunReport, client: redis.Redis, keys: Keys, every: float, send: Callable[[float], object]
) -> float | None:
    """Retry temporary failures when their backoff ends instead of at the next beat tick. The key
    (with the countdown as TTL) keeps it to one queued follow-up however many runs see retries.
    Returns the countdown when a follow-up was queued."""
    if not report.ran or report.next_retry_in is None:
        return None
    delay = max(1.0, min(report.next_retry_in, MAX_FOLLOW_UP_SECONDS, every))
    if not client.set(keys.reminder_follow_up, report.run_id, nx=True, px=int(delay * 1000)):
        return None
    send(delay)
    return delay


@app.task(name="reminders.send_confirmations")  # type: ignore[untyped-decorator]
def send_confirmations_task() -> dict[str, Any]:
    """Expire old pending signatures, send owed confirmation emails and reminders to confirm.
    A run that spent its whole batch queues the next at once (a viral petition's backlog)."""
    rt = runtime(settings)
    report = send_confirmations(settings, rt.registry)
    rt.metrics.confirm_emails.labels("sent").inc(report.sent)
    rt.metrics.confirm_emails.labels("reminded").inc(report.reminded)
    rt.metrics.confirm_emails.labels("failed").inc(report.failed)
    spent = report.sent + report.reminded + report.failed + report.retrying
    if report.stopped is None and spent >= settings.confirm_batch:
        send_confirmations_task.apply_async()
    return report.summary()
