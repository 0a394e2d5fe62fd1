"""Beat tasks: the hourly suspicious-share report and the nightly count reconciliation.

Both are safe to run twice at once (two beat processes by mistake): the report is read-only
apart from its Redis copy, and a repair locks the petition row it sets.
"""

from __future__ import annotations

from worker.integrity.jobs import reconcile_signature_counts, report_suspicious_signatures
from worker.runtime import runtime
from worker.scheduling.app import app, settings


@app.task(name="integrity.report_suspicious")  # type: ignore[untyped-decorator]
def report_suspicious() -> int:
    """Returns the number of findings."""
    return len(report_suspicious_signatures(runtime(settings)).findings)


@app.task(name="integrity.reconcile_counts")  # type: ignore[untyped-decorator]
def reconcile_counts() -> int:
    """Repairs every drift (as the nightly job of a large public petitions site does); returns
    how many petitions had drifted."""
    return len(reconcile_signature_counts(runtime(settings), fix=True))
