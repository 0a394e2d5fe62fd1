"""The petition page and its signing form, served by the intake app.

`with_pages` adds them to the intake's routes: `GET /petitions/{id}` answers HTML to browsers
(JSON to everyone else, as before), `POST /petitions/{id}/signatures` takes browser form posts
(CSRF token, origin check, honeypot, answers in plain words) and leaves every other post to the
intake untouched, so the JSON path costs one header look-up more. No-JavaScript form posts get a
303 to the thank-you page or the form again with the errors and the signer's typing; the page's
script posts in the background and gets JSON.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from email_validator import EmailNotValidError
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api_stub.intake.handlers import Intake, accepted_body
from api_stub.intake.parse import IntakeError, _form_object, parse_petition_id
from api_stub.intake.queue import Appended
from api_stub.pages import csrf
from api_stub.pages.assets import load_assets, serving_assets
from api_stub.pages.form import (
    HONEYPOT,
    MESSAGES,
    form_values,
    is_browser_form,
    plain_messages,
    prefers_html,
)
from api_stub.pages.text import render_text
from worker.drain.registry import PetitionCard
from worker.errors import QueueUnavailable
from worker.pipeline.emails import EmailChecker
from worker.pipeline.fields import (
    FORM_TRUE,
    MAX_COUNTRY,
    MAX_EMAIL,
    MAX_NAME,
    MAX_POSTCODE,
    InvalidFields,
    SignatureFields,
    parse_fields,
)
from worker.pipeline.wording import call_to_action, first_name

Handler = Callable[[Request], Awaitable[Response]]
RETRY_AFTER = {"unavailable": "1", "backlog_full": "5"}
# name, label, input type, autocomplete, maxlength, required: the text fields in focus order
TEXT_FIELDS = (
    ("name", "Your name", "text", "name", MAX_NAME, True),
    ("email", "Email address", "email", "email", MAX_EMAIL, True),
    ("postcode", "Postcode", "text", "postal-code", MAX_POSTCODE, False),
    ("country", "Country", "text", "country-name", MAX_COUNTRY, False),
)
# The page carries a per-visitor token: no shared caching; and nothing but our own files.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Vary": "Accept",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class FormState:
    """What the form shows: the signer's typing, errors by field, a message for the whole form."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None

    @property
    def focus(self) -> str | None:
        """The first field with an error, focused when the page loads again."""
        return next((name for name, *_ in TEXT_FIELDS if name in self.errors), None)


class PetitionPages:
    """The page handlers, holding the intake (body limits, IP hash, queue) and the templates."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.settings = intake.settings
        self.emails = EmailChecker()
        self.templates = Environment(
            loader=PackageLoader("api_stub.pages", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # --- GET /petitions/{id} and /petitions/{id}/thanks ------------------------------------

    def negotiating(self, json_endpoint: Handler) -> Handler:
        """The petition endpoint: the page for browsers, the intake's JSON for everyone else."""

        async def petition(request: Request) -> Response:
            if prefers_html(request.headers.get("accept")):
                return await self.page(request)
            response = await json_endpoint(request)
            response.headers["Vary"] = "Accept"
            return response

        return petition

    async def page(self, request: Request) -> Response:
        return await self._showing(request, lambda card: self._petition_page(request, card, FormState(), 200))

    async def thanks(self, request: Request) -> Response:
        def render(card: PetitionCard) -> Response:
            html = self.templates.get_template("thanks.html").render(card=card)
            return HTMLResponse(html, 200, PAGE_HEADERS)

        return await self._showing(request, render)

    async def _showing(self, request: Request, render: Callable[[PetitionCard], Response]) -> Response:
        """`render(card)` for the petition in the path, or a page saying why there is none."""
        try:
            card = await self._card_or_none(request)
        except QueueUnavailable:
            text = "We cannot show this petition just now. Please try again in a minute."
            return self.message(
                503, "Please try again shortly", text, {"Retry-After": RETRY_AFTER["unavailable"]}
            )
        if card is None:
            return self.message(404, "Petition not found", MESSAGES["petition_not_found"])
        return render(card)

    async def _card_or_none(self, request: Request) -> PetitionCard | None:
        try:
            return await self.intake.queue.petition(parse_petition_id(request.path_params["petition_id"]))
        except IntakeError:
            return None

    # --- POST /petitions/{id}/signatures from a browser ------------------------------------

    def accepting_forms(self, intake_endpoint: Handler) -> Handler:
        """The signing endpoint: browser form posts here, everything else to the intake as before."""

        async def sign(request: Request) -> Response:
            if is_browser_form(request.headers):
                return await self.sign_form(request)
            return await intake_endpoint(request)

        return sign

    async def sign_form(self, request: Request) -> Response:
        """Accept a browser's form post, or refuse it in plain words with the typing kept."""
        state = FormState()
        try:
            petition_id = parse_petition_id(request.path_params["petition_id"])
            appended = await self._accept(request, petition_id, state)
        except IntakeError as exc:
            return await self._refuse(request, exc, state)
        except QueueUnavailable:
            unavailable = IntakeError(503, "unavailable", "the queue is unreachable; try again shortly")
            return await self._refuse(request, unavailable, state)
        if prefers_html(request.headers.get("accept")):
            return RedirectResponse(f"/petitions/{petition_id}/thanks", 303)
        return _json(accepted_body(appended), 202)

    async def _accept(self, request: Request, petition_id: int, state: FormState) -> Appended:
        """Check the post and queue it; returns the receipt. Raises `IntakeError`, `QueueUnavailable`."""
        body = await self.intake.read_body(request)
        data = _form_object(body)
        state.values = form_values(data)
        self._check_csrf(request, data.get(csrf.FIELD))
        fields = self._fields(data, request.headers.get("idempotency-key"))
        honeypot = bool(str(data.get(HONEYPOT) or "").strip())
        return await self.intake.enqueue(request, petition_id, fields, honeypot=honeypot)

    def _check_csrf(self, request: Request, token: object) -> None:
        origin_ok = csrf.same_origin(
            request.headers.get("origin"),
            request.headers.get("host"),
            request.url.scheme,
            self.settings.public_url,
        )
        token_ok = csrf.check_token(
            self.settings.csrf_secret,
            request.cookies.get(csrf.COOKIE),
            token,
            int(time.time()),
            self.settings.csrf_max_age_seconds,
        )
        if not (origin_ok and token_ok):
            raise IntakeError(403, "csrf_failed", "the form's security token is missing, old or not yours")

    def _fields(self, data: dict[str, object], header_key: str | None) -> SignatureFields:
        """The intake's field checks, plus the email's syntax (the worker would reject it silently)."""
        if header_key is not None:
            data["idempotency_key"] = header_key
        try:
            fields = parse_fields(data)
            self.emails.check(fields.email)
        except InvalidFields as exc:
            raise IntakeError(422, "invalid_fields", "some fields are missing or wrong", exc.errors) from None
        except EmailNotValidError as exc:
            raise IntakeError(
                422, "invalid_fields", "some fields are missing or wrong", {"email": str(exc)}
            ) from None
        return fields

    async def _refuse(self, request: Request, problem: IntakeError, state: FormState) -> Response:
        state.errors = plain_messages(problem.fields)
        state.message = MESSAGES.get(problem.error, problem.detail)
        headers = {"Retry-After": RETRY_AFTER[problem.error]} if problem.error in RETRY_AFTER else {}
        if not prefers_html(request.headers.get("accept")):
            body = {**problem.body(), "message": state.message, "messages": state.errors}
            new_nonce = None
            if problem.error == "csrf_failed":  # the script retries with a fresh token
                body["csrf_token"], new_nonce = self._token(request)
            return self._remember(_json(body, problem.status, headers), new_nonce)
        try:
            card = await self._card_or_none(request)
        except QueueUnavailable:
            card = None
        if card is None:
            return self.message(
                problem.status, "We could not take your signature", state.message or "", headers
            )
        return self._petition_page(request, card, state, problem.status, headers)

    # --- rendering --------------------------------------------------------------------------

    def _petition_page(
        self,
        request: Request,
        card: PetitionCard,
        state: FormState,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        token, new_nonce = self._token(request) if card.status == "open" else ("", None)
        html = self.templates.get_template("petition.html").render(
            card=card,
            body=render_text(card.body),
            first_name=first_name(card.starter_name),
            call_to_action=call_to_action(card.starter_name, card.status, card.signature_count),
            form=state,
            opted_in=state.values.get("opt_in", "").strip().lower() in FORM_TRUE,
            fields=TEXT_FIELDS,
            honeypot=HONEYPOT,
            csrf_token=token,
        )
        response = HTMLResponse(html, status, {**PAGE_HEADERS, **(headers or {})})
        return self._remember(response, new_nonce)

    def message(
        self, status: int, heading: str, text: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        html = self.templates.get_template("message.html").render(heading=heading, text=text)
        return HTMLResponse(html, status, {**PAGE_HEADERS, **(headers or {})})

    def _token(self, request: Request) -> tuple[str, str | None]:
        """A CSRF token for this visitor, and the new nonce to set when they have none yet."""
        nonce = request.cookies.get(csrf.COOKIE)
        new_nonce = None
        if not csrf.valid_nonce(nonce):
            nonce = new_nonce = csrf.new_nonce()
        return csrf.make_token(self.settings.csrf_secret, nonce, int(time.time())), new_nonce

    def _remember(self, response: Response, new_nonce: str | None) -> Response:
        if new_nonce is not None:
            response.set_cookie(
                csrf.COOKIE,
                new_nonce,
                httponly=True,
                samesite="lax",
                secure=self.settings.public_url.startswith("https://"),
                path="/",
            )
        return response


def _json(body: object, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, dict(headers or {}), media_type="application/json")


def with_pages(routes: list[Route], intake: Intake) -> list[Route]:
    """The intake's routes with the petition page added: the petition and signing endpoints
    wrapped to serve browsers, plus the thank-you page and the page's static files."""
    pages = PetitionPages(intake)
    wrapped = []
    for route in routes:
        if route.path == "/petitions/{petition_id}":
            route = Route(route.path, pages.negotiating(route.endpoint), methods=route.methods)
        elif route.path == "/petitions/{petition_id}/signatures":
            route = Route(route.path, pages.accepting_forms(route.endpoint), methods=route.methods)
        wrapped.append(route)
    return [
        *wrapped,
        Route("/petitions/{petition_id}/thanks", pages.thanks, methods=["GET"], include_in_schema=False),
        Route("/static/{name}", serving_assets(load_assets()), methods=["GET"], include_in_schema=False),
    ]
