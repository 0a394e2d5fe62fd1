"""Errors named for what happens next. Driver errors are translated where they enter."""

from __future__ import annotations


class RetryLater(Exception):
    """A server is unreachable or busy: keep the batch pending and try again after a backoff."""


class BatchRejected(Exception):
    """PostgreSQL refused the batch for its content: split it to find the entry at fault."""


class QueueUnavailable(RetryLater):
    """Redis did not answer: the intake says 503 with Retry-After; workers back off."""
