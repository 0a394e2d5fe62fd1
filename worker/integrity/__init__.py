"""Trustworthy counts: invalidation, reconciliation, the suspicious-share report, and privacy
(export, anonymize, forget). Operator actions, run by `sigingest` and Celery beat."""
