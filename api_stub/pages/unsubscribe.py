"""Unsubscribe endpoints of the intake: `GET /unsubscribe/{token}` shows a confirmation form;
`POST` (the form, or a mail client's RFC 8058 one-click `List-Unsubscribe=One-Click`) records it.

Like the rest of the intake this touches only Redis: the unsubscribe goes into a hash
(`delivery:<id>` -> time; an old link's canonical email -> time) that the reminders task resolves
to people and moves into PostgreSQL's `unsubscribes` at the start of every run and before every
send. The intake never learns the address, so its pages never show one. A forged or altered token
gets 400 and nothing is written. A GET never unsubscribes (mail scanners follow links).
"""

from __future__ import annotations

import html
import time

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from worker.drain.streams import translated
from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.reminders.tokens import pending_field, read_token

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head><body style="font-family: sans-serif; max-width: 36em; margin: 2em auto">
<h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status)


class Unsubscribes:
    def __init__(self, secret: str, client: aioredis.Redis, keys: Keys, previous: str = "") -> None:
        self._secret = secret
        self._previous = previous  # UNSUBSCRIBE_SECRET_PREVIOUS: links mailed before a rotation
        self._redis = client
        self._keys = keys

    async def handle(self, request: Request) -> Response:
        who = read_token(self._secret, request.path_params["token"], self._previous)
        if who is None:
            return page("This link is not valid", "<p>Please use the link from the email as it is.</p>", 400)
        if request.method == "GET":
            return self._confirmation()
        now_ms = time.time_ns() // 1_000_000
        try:
            with translated():
                await self._redis.hsetnx(self._keys.pending_unsubscribes, pending_field(who), now_ms)
        except QueueUnavailable:
            return page("Please try again", "<p>We could not record this just now.</p>", 503)
        return page("You are unsubscribed", "<p>This address will get no more reminders.</p>")

    def _confirmation(self) -> HTMLResponse:
        body = (
            "<p>Stop reminder emails about other petitions to the address this link was sent to?</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>'
        )
        return page("Unsubscribe", body)


def unsubscribe_routes(secret: str, client: aioredis.Redis, keys: Keys, previous: str = "") -> list[Route]:
    handler = Unsubscribes(secret, client, keys, previous).handle
    return [Route("/unsubscribe/{token}", handler, methods=["GET", "POST"], include_in_schema=False)]
