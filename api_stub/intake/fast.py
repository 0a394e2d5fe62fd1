"""The hot route, answered in front of Starlette's middleware stack.

Under a spike nearly every request is a JSON `POST /petitions/{id}/signatures`, and Starlette's
layers and the metrics middleware around it were a large share of its CPU (BENCHMARKS.md,
"Profile, round 3"). `FastSigning` takes those requests before that stack: matched by the route's own
`matches`, answered by the same endpoint (`answering_errors(Intake.sign)`: the same parsing, Lua
append, error translation and responses), tallied in the same /metrics figures, and an
unexpected error answered 500 and re-raised as Starlette's `ServerErrorMiddleware` does.
Everything else, form posts to the same path included, goes through the whole app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_stub.intake.parse import JSON_TYPES, media_type
from api_stub.metrics.tallies import Tallies

Handler = Callable[[Request], Awaitable[Response]]


class FastSigning:
    """ASGI app: JSON posts matching `route` go to `endpoint`; everything else to `app`."""

    def __init__(self, app: ASGIApp, route: Route, endpoint: Handler, tallies: Tallies) -> None:
        self.app, self.route, self.endpoint, self.tallies = app, route, endpoint, tallies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match, child_scope = self.route.matches(scope)
            if match is Match.FULL and media_type(Headers(scope=scope).get("content-type")) in JSON_TYPES:
                scope["route"] = self.route
                scope.update(child_scope)
                await self.answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer through the endpoint and tally it; an exception is re-raised after the 500."""
        started = perf_counter()
        status, received, sent, answering = 500, 0, 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            response = await self.endpoint(Request(scope, counting_receive))
            # Counted as the metrics middleware counts: the status before the start is sent, the
            # body's bytes before the body is sent; once the start is on its way, no 500 follows.
            status, answering = response.status_code, True
            await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
            sent = len(response.body)
            await send({"type": "http.response.body", "body": response.body})
        except Exception:
            if not answering:
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        finally:
            elapsed = perf_counter() - started
            self.tallies.record("POST", self.route.path, status, elapsed, received, sent)


class IntakeApp(Starlette):
    """Starlette with `FastSigning` in front of its middleware stack once `fast_path` is set."""

    fast_path: tuple[Route, Handler, Tallies] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return FastSigning(stack, *self.fast_path) if self.fast_path else stack
