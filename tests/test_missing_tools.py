"""A test whose tool (a browser, a server binary) is missing skips on a developer's machine and
fails in CI, so a green CI run means every test ran."""

from __future__ import annotations

import pytest

from tests.helpers import missing_tool


@pytest.mark.parametrize("value", ["true", "1", "yes", "True"])
def test_with_ci_set_a_missing_tool_fails_the_test(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="no redis-server binary on PATH"):
        missing_tool("no redis-server binary on PATH")


@pytest.mark.parametrize("value", [None, "", "0", "false", "FALSE", "no"])
def test_without_ci_a_missing_tool_skips_the_test(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no redis-server binary on PATH"):
        missing_tool("no redis-server binary on PATH")
