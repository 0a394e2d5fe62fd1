"""A small Python handle on headless Chromium, through `driver.mjs` (Playwright's playwright-core).

One node process per test session; each test opens a fresh browser context (no cookies, no
cache) with JavaScript on or off. Calls are relayed one at a time and fail with Playwright's own
message, after its 10 s timeout at most.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DRIVER = HERE / "driver.mjs"
ARTIFACTS = HERE.parent.parent / "test-artifacts" / "browser"


class BrowserError(AssertionError):
    """Playwright refused or timed out: the page did not do what the test expected."""


class Browser:
    def __init__(self, node: str, chromium: str, log: Path) -> None:
        self._log = log.open("wb")
        self._proc = subprocess.Popen(
            [node, str(DRIVER), chromium],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=HERE,
            text=True,
        )
        self._ids = itertools.count(1)
        ready = self._read()
        if "ready" not in ready:
            raise BrowserError(f"the browser driver did not start: {ready}")
        self.version = str(ready["ready"])

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise BrowserError(f"the browser driver exited ({self._proc.poll()}); see {self._log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **request: Any) -> Any:
        assert self._proc.stdin is not None
        request_id = next(self._ids)
        self._proc.stdin.write(json.dumps({"id": request_id, "op": op, **request}) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if answer.get("id") != request_id or not answer.get("ok"):
            raise BrowserError(f"{op} {request}: {answer.get('error', answer)}")
        return answer["value"]

    def open(self, *, javascript: bool = True) -> Page:
        self.call("open", options={"javaScriptEnabled": javascript})
        return Page(self)

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


class Page:
    """The open page of the current context, with the calls the tests need."""

    def __init__(self, browser: Browser) -> None:
        self._browser = browser

    def _page(self, method: str, *args: Any) -> Any:
        return self._browser.call("page", method=method, args=list(args))

    def _locator(self, selector: str, method: str, *args: Any) -> Any:
        return self._browser.call("locator", selector=selector, method=method, args=list(args))

    def goto(self, url: str) -> int:
        """Open `url`; returns the HTTP status of the page."""
        return int(self._page("goto", url)["status"])

    def reload(self) -> int:
        return int(self._page("reload")["status"])

    @property
    def url(self) -> str:
        return str(self._page("url"))

    def title(self) -> str:
        return str(self._page("title"))

    def html(self) -> str:
        return str(self._page("content"))

    def evaluate(self, expression: str) -> Any:
        return self._page("evaluate", expression)

    def fill(self, selector: str, value: str) -> None:
        self._locator(selector, "fill", value)

    def click(self, selector: str) -> None:
        self._locator(selector, "click")

    def check(self, selector: str) -> None:
        self._locator(selector, "check")

    def press(self, key: str) -> None:
        self._browser.call("keyboard", method="press", args=[key])

    def text(self, selector: str) -> str:
        return " ".join(str(self._locator(selector, "innerText")).split())

    def attribute(self, selector: str, name: str) -> str | None:
        value = self._locator(selector, "getAttribute", name)
        return None if value is None else str(value)

    def value(self, selector: str) -> str:
        return str(self._locator(selector, "inputValue"))

    def visible(self, selector: str) -> bool:
        return bool(self._locator(selector, "isVisible"))

    def checked(self, selector: str) -> bool:
        return bool(self._locator(selector, "isChecked"))

    def count(self, selector: str) -> int:
        return int(self._locator(selector, "count"))

    def wait_visible(self, selector: str) -> None:
        self._locator(selector, "waitFor", {"state": "visible"})

    def focused_id(self) -> str:
        return str(self.evaluate("document.activeElement ? document.activeElement.id : ''"))

    def submit(self, selector: str = "button[type=submit]") -> tuple[int, str]:
        """Click a submit button and wait for the page a browser without JavaScript lands on:
        (status of the POST, URL shown afterwards)."""
        landed = self._browser.call("submit", selector=selector)
        return int(landed["status"]), str(landed["url"])

    def seen(self) -> dict[str, list[Any]]:
        """Every request this page made, and every script error or console error."""
        seen: dict[str, list[Any]] = self._browser.call("seen")
        return seen

    def screenshot(self, name: str) -> Path:
        """Save the whole page as test-artifacts/browser/<name>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self._page("screenshot", {"path": str(path), "fullPage": True})
        return path
