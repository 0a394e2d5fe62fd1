"""Where `celery -A worker` finds the app (Celery's `proj/celery.py` convention), so that
`worker/__init__.py` imports nothing of Celery and the intake stays light. The app itself is
built in `worker/scheduling/app.py`."""

from __future__ import annotations

from worker.scheduling.app import app, settings

__all__ = ["app", "settings"]
