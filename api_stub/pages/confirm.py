"""Following the confirmation link: `GET /confirm/{token}` shows a page with one button; its
`POST` confirms. A mail scanner that fetches every link confirms nothing.

The token's MAC is checked here, without any database look-up; a genuine one queues a
confirmation event through the same one-round-trip Lua append as signing, and the answer is a
303 to `/petitions/{id}/confirmed` ("you're counted in a moment"): the drain confirms and
counts it in its next batch. A forged, cut or altered token gets a 400 page in plain words and
nothing is queued.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api_stub.intake.parse import IntakeError, parse_petition_id
from api_stub.pages.routes import PAGE_HEADERS, PetitionPages
from worker.errors import QueueUnavailable
from worker.reminders.tokens import confirm_key, read_confirm_token

NOT_VALID = (
    "This confirmation link is not valid. Please open the link from the email exactly as it is; "
    "if it was cut across two lines, copy both parts."
)


class Confirmations:
    def __init__(self, pages: PetitionPages) -> None:
        self.pages = pages
        self.queue = pages.intake.queue
        settings = pages.settings
        self._key = confirm_key(settings.unsubscribe_secret)
        # Links mailed before a rotation of UNSUBSCRIBE_SECRET keep working, like unsubscribe links.
        previous = settings.unsubscribe_secret_previous
        self._previous = confirm_key(previous) if previous else b""

    async def handle(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        found = read_confirm_token(self._key, token, self._previous)
        if found is None:
            return self.pages.message(400, "This link is not valid", NOT_VALID)
        petition_id, receipt = found
        if request.method == "GET":
            return await self._ask(petition_id)
        try:
            status = await self.queue.confirm(petition_id, receipt, time.time_ns() // 1_000_000)
        except QueueUnavailable:
            return self._try_again()
        if status == "full":
            return self._try_again()
        if status != "ok":
            return self.pages.message(404, "Petition not found", "This petition no longer exists.")
        return RedirectResponse(f"/petitions/{petition_id}/confirmed", 303)

    async def _ask(self, petition_id: int) -> Response:
        try:
            card = await self.queue.petition(petition_id)
        except QueueUnavailable:
            return self._try_again()
        if card is None:
            return self.pages.message(404, "Petition not found", "This petition no longer exists.")
        html = self.pages.templates.get_template("confirm.html").render(card=card)
        return HTMLResponse(html, 200, {**PAGE_HEADERS, "Referrer-Policy": "no-referrer"})

    async def confirmed(self, request: Request) -> Response:
        try:
            petition_id = parse_petition_id(request.path_params["petition_id"])
            card = await self.queue.petition(petition_id)
        except IntakeError:
            card = None
        except QueueUnavailable:
            return self._try_again()
        if card is None:
            return self.pages.message(404, "Petition not found", "This petition no longer exists.")
        html = self.pages.templates.get_template("confirmed.html").render(card=card)
        return HTMLResponse(html, 200, PAGE_HEADERS)

    def _try_again(self) -> Response:
        text = "We could not record this just now. Please try the button again in a minute."
        return self.pages.message(503, "Please try again shortly", text, {"Retry-After": "5"})


def confirm_routes(pages: PetitionPages) -> list[Route]:
    confirmations = Confirmations(pages)
    return [
        Route("/confirm/{token}", confirmations.handle, methods=["GET", "POST"], include_in_schema=False),
        Route(
            "/petitions/{petition_id}/confirmed",
            confirmations.confirmed,
            methods=["GET"],
            include_in_schema=False,
        ),
    ]
