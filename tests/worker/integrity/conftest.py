"""`cli_env`: the process environment `sigingest` reads, pointing at this test's servers."""

from __future__ import annotations

import pytest

from worker.settings import Settings


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, val in settings.model_dump().items():
        monkeypatch.setenv(name.upper(), str(val))
