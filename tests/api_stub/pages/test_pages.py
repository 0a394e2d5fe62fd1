"""The petition page and its form over HTTP (Starlette's test client, real Redis and PostgreSQL).

What a browser gets: the page by content negotiation, the form's CSRF token and honeypot, the
no-JavaScript post (303 or the form again with errors and typing), the script's JSON answers.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator

import httpx2
import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from api_stub.pages import csrf
from tests.conftest import PetitionFactory
from tests.helpers import backlog
from worker.drain.petitions import set_status
from worker.drain.registry import PetitionCard
from worker.runtime import Runtime
from worker.settings import Settings

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
SEED_TITLE = "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon"
ORIGIN = "http://testserver"
PAGE = {"accept": CHROME}
NO_JS_POST = {"accept": CHROME, "origin": ORIGIN}
SCRIPT_POST = {"accept": "application/json", "origin": ORIGIN}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def petition(make_petition: PetitionFactory) -> PetitionCard:
    return make_petition()


def text_of(page: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(without_tags).split())


def token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the form has no CSRF token"
    return match[1]


def field_of(page: str, name: str) -> str:
    """The block around one form field: its label, its error and its input."""
    blocks = [b for b in page.split('<div class="field') if f'id="{name}"' in b]
    assert len(blocks) == 1, f"no single block for field {name}"
    return blocks[0].split("</div>", 1)[0]


def input_of(page: str, name: str) -> str:
    match = re.search(rf'<input id="{name}"[^>]*>', page)
    assert match, f"no input {name}"
    return match[0]


def queued(rt: Runtime) -> int:
    return backlog(rt)[0]


def sign_in_browser(
    client: TestClient, petition_id: int, headers: dict[str, str] = NO_JS_POST, **fields: str
) -> httpx2.Response:
    """Open the page (cookie and token), then post the form as a browser does."""
    token = token_of(client.get(f"/petitions/{petition_id}", headers=PAGE).text)
    return client.post(
        f"/petitions/{petition_id}/signatures",
        data={"csrf_token": token, **fields},
        headers=headers,
        follow_redirects=False,
    )


def signature_states(db: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT email, state FROM signatures WHERE receipt NOT LIKE 'starter-%%' ORDER BY email"
    ).fetchall()


def count_in_db(db: psycopg.Connection[tuple[object, ...]], petition_id: int) -> int:
    row = db.execute("SELECT signature_count FROM petitions WHERE id = %s", [petition_id]).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


# --- the page ---------------------------------------------------------------------------------


def test_json_clients_keep_getting_json(client: TestClient, petition: PetitionCard) -> None:
    for accept in (None, "*/*", "application/json"):
        response = client.get(f"/petitions/{petition.id}", headers={"accept": accept} if accept else {})
        assert response.headers["content-type"] == "application/json"
        assert response.json()["title"] == "Save the library"
        assert response.headers["vary"] == "Accept"


def test_the_page_shows_the_petition_in_the_seeds_words_with_the_committed_count(
    client: TestClient, make_petition: PetitionFactory, drain: Callable[[], int]
) -> None:
    # Given Clara LONG's petition with her own signature and 262 others, counted by the worker
    petition = make_petition(title=SEED_TITLE, starter="Clara LONG")
    for n in range(262):
        client.post(f"/petitions/{petition.id}/signatures", json={"email": f"s{n}@example.org", "name": "S"})
    drain()
    # When a browser opens it
    response = client.get(f"/petitions/{petition.id}", headers=PAGE)
    # Then it reads as the seed does
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    text = text_of(response.text)
    assert SEED_TITLE in text and "Started by Clara LONG" in text
    assert "263 signatures" in text
    assert "Today: Clara is counting on you" in text
    assert f"Clara LONG needs your help with “{SEED_TITLE}”. Join Clara and 262 supporters today." in text


def test_the_form_has_labelled_fields_an_unticked_opt_in_a_token_and_a_hidden_honeypot(
    client: TestClient, petition: PetitionCard, settings: Settings
) -> None:
    response = client.get(f"/petitions/{petition.id}", headers=PAGE)
    page = response.text
    assert f'action="/petitions/{petition.id}/signatures"' in page and 'method="post"' in page
    for name in ("name", "email", "postcode", "country", "opt_in"):
        assert f'<label for="{name}">' in page
        assert f'aria-describedby="{name}-error"' in input_of(page, name)
    assert "required" in input_of(page, "name") and "required" in input_of(page, "email")
    assert "required" not in input_of(page, "postcode") and "required" not in input_of(page, "country")
    assert 'type="checkbox"' in input_of(page, "opt_in") and "checked" not in input_of(page, "opt_in")
    assert 'tabindex="-1"' in input_of(page, "comment") and '<div class="hp" aria-hidden="true">' in page
    token = token_of(page)
    cookie = response.cookies[csrf.COOKIE]
    assert csrf.check_token(settings.csrf_secret, cookie, token, int(token.split(".")[0]), 60)
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()


def test_the_page_is_small_and_loads_nothing_from_elsewhere(
    client: TestClient, petition: PetitionCard
) -> None:
    response = client.get(f"/petitions/{petition.id}", headers=PAGE)
    links = [link for link in re.findall(r'(?:src|href|action)="([^"]*)"', response.text) if link != "data:,"]
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
    assets = [client.get(link) for link in links if link.startswith("/static/")]
    assert [a.status_code for a in assets] == [200, 200]
    weight = len(response.content) + sum(len(a.content) for a in assets)
    assert weight < 50 * 1024, weight
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_titles_and_names_are_escaped(client: TestClient, make_petition: PetitionFactory) -> None:
    petition = make_petition(title="<script>alert(1)</script>", starter="<b>Eve</b>")
    page = client.get(f"/petitions/{petition.id}", headers=PAGE).text
    assert "<script>alert" not in page and "<b>Eve" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_victory_shows_the_victory_and_no_form(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    set_status(rt.engine, rt.registry, petition.id, "victory")
    page = client.get(f"/petitions/{petition.id}", headers=PAGE).text
    text = text_of(page)
    assert "Confirmed victory" in text and "This petition made change with 1 supporter!" in text
    assert "<form" not in page and "counting on you" not in text


def test_a_closed_petition_says_so_and_has_no_form(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    set_status(rt.engine, rt.registry, petition.id, "closed")
    page = client.get(f"/petitions/{petition.id}", headers=PAGE).text
    assert "This petition is closed. 1 person signed it." in text_of(page) and "<form" not in page


@pytest.mark.parametrize("path", ["/petitions/424242", "/petitions/abc", "/petitions/424242/thanks"])
def test_an_unknown_petition_gets_a_404_page(client: TestClient, path: str) -> None:
    response = client.get(path, headers=PAGE)
    assert response.status_code == 404 and "We could not find this petition." in text_of(response.text)


def test_the_page_says_to_try_again_when_redis_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        response = client.get("/petitions/1", headers=PAGE)
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert "Please try again in a minute." in text_of(response.text)


def test_static_files_are_served_with_their_type_and_revalidated_by_etag(client: TestClient) -> None:
    script = client.get("/static/petition.js")
    assert script.headers["content-type"].startswith("text/javascript")
    again = client.get("/static/petition.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/static/petition.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../pages.py").status_code == 404
    assert client.get("/static/missing.js").status_code == 404


# --- signing without JavaScript ---------------------------------------------------------------


def test_a_no_js_signature_gets_303_to_a_thank_you_page_and_is_counted(
    client: TestClient,
    petition: PetitionCard,
    rt: Runtime,
    db: psycopg.Connection[tuple[object, ...]],
    drain: Callable[[], int],
) -> None:
    response = sign_in_browser(client, petition.id, name="Ann Lee", email="ann@example.org", opt_in="on")
    assert response.status_code == 303
    assert response.headers["location"] == f"/petitions/{petition.id}/thanks"
    thanks = client.get(response.headers["location"], headers=PAGE)
    assert "Your signature on “Save the library” is being counted." in text_of(thanks.text)
    drain()
    assert signature_states(db) == [("ann@example.org", "validated")]
    assert count_in_db(db, petition.id) == 2
    assert "2 signatures" in text_of(client.get(f"/petitions/{petition.id}", headers=PAGE).text)


def test_an_invalid_email_gets_the_form_again_with_the_message_by_the_field_and_the_typing_kept(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(
        client, petition.id, name="Ann <Lee>", email="ann.example.org", postcode="SW1A 1AA", opt_in="on"
    )
    page = response.text
    assert response.status_code == 422
    email = field_of(page, "email")
    assert "Enter an email address like name@example.org." in text_of(email)
    assert 'aria-invalid="true"' in email and "autofocus" in email
    assert 'value="ann.example.org"' in email
    assert 'value="Ann &lt;Lee&gt;"' in input_of(page, "name") and 'value="SW1A 1AA"' in page
    assert "checked" in input_of(page, "opt_in")
    assert "Please correct the fields marked below." in text_of(page) and text_of(page).startswith("Error:")
    assert queued(rt) == 0


def test_an_address_the_email_checker_refuses_is_caught_at_the_form_not_silently_later(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(client, petition.id, name="Ann", email="ann@localhost")
    assert response.status_code == 422
    assert "@-sign" in text_of(field_of(response.text, "email"))
    assert queued(rt) == 0


def test_a_missing_name_is_reported_by_the_name_field(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(client, petition.id, name="  ", email="ann@example.org")
    assert response.status_code == 422
    assert "Enter your name." in text_of(field_of(response.text, "name"))
    assert "Enter" not in text_of(field_of(response.text, "email"))
    assert queued(rt) == 0


def test_a_closed_petition_answers_409_in_words(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    token = token_of(client.get(f"/petitions/{petition.id}", headers=PAGE).text)
    set_status(rt.engine, rt.registry, petition.id, "closed")
    response = client.post(
        f"/petitions/{petition.id}/signatures",
        data={"csrf_token": token, "name": "Ann", "email": "ann@example.org"},
        headers=NO_JS_POST,
    )
    assert response.status_code == 409
    assert "This petition has closed, so your signature could not be added." in text_of(response.text)
    assert queued(rt) == 0


def test_a_full_backlog_answers_503_with_the_form_and_typing_kept(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime
) -> None:
    petition = make_petition()
    with TestClient(create_app(settings.model_copy(update={"max_backlog": 1}))) as client:
        client.post(f"/petitions/{petition.id}/signatures", json={"email": "a@example.org", "name": "A"})
        assert queued(rt) == 1  # the limit, on the shard this address goes to
        response = sign_in_browser(client, petition.id, name="Bea", email="a@example.org")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "your details are still in the form" in text_of(response.text)
    assert 'value="Bea"' in input_of(response.text, "name")
    assert queued(rt) == 1


def test_a_form_over_the_size_limit_gets_413_in_words(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(client, petition.id, name="A" * 9000, email="ann@example.org")
    assert response.status_code == 413
    assert "The form is too long to send." in text_of(response.text)
    assert queued(rt) == 0


# --- CSRF ---------------------------------------------------------------------------------


def test_a_browser_post_without_a_token_is_refused_and_the_form_comes_back_with_a_fresh_one(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    client.get(f"/petitions/{petition.id}", headers=PAGE)  # the cookie, but no token posted
    response = client.post(
        f"/petitions/{petition.id}/signatures",
        data={"name": "Ann", "email": "ann@example.org"},
        headers=NO_JS_POST,
    )
    assert response.status_code == 403
    assert "This form had expired, so nothing was sent." in text_of(response.text)
    assert 'value="ann@example.org"' in input_of(response.text, "email")
    again = client.post(
        f"/petitions/{petition.id}/signatures",
        data={"csrf_token": token_of(response.text), "name": "Ann", "email": "ann@example.org"},
        headers=NO_JS_POST,
        follow_redirects=False,
    )
    assert again.status_code == 303 and queued(rt) == 1


def test_a_token_from_another_visitor_or_another_site_is_refused(
    settings: Settings, client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    # The attacker fetches a page (and token) for themselves...
    with TestClient(create_app(settings)) as attacker:
        stolen = token_of(attacker.get(f"/petitions/{petition.id}", headers=PAGE).text)
    # ...and the victim's browser posts it from their site: another nonce, another origin.
    client.get(f"/petitions/{petition.id}", headers=PAGE)
    fields = {"csrf_token": stolen, "name": "Ann", "email": "ann@example.org"}
    url = f"/petitions/{petition.id}/signatures"
    assert client.post(url, data=fields, headers=NO_JS_POST).status_code == 403
    own = token_of(client.get(f"/petitions/{petition.id}", headers=PAGE).text)
    cross_site = {"accept": CHROME, "origin": "https://evil.example"}
    assert client.post(url, data={**fields, "csrf_token": own}, headers=cross_site).status_code == 403
    assert queued(rt) == 0


def test_an_expired_token_is_refused(
    settings: Settings, client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    client.get(f"/petitions/{petition.id}", headers=PAGE)
    nonce = client.cookies[csrf.COOKIE]
    old = csrf.make_token(settings.csrf_secret, nonce, 1_000_000_000)
    response = client.post(
        f"/petitions/{petition.id}/signatures",
        data={"csrf_token": old, "name": "Ann", "email": "ann@example.org"},
        headers=NO_JS_POST,
    )
    assert response.status_code == 403 and queued(rt) == 0


def test_api_clients_posting_json_or_a_bare_form_need_no_token(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    url = f"/petitions/{petition.id}/signatures"
    assert client.post(url, json={"email": "a@example.org", "name": "Ann"}).status_code == 202
    bare = client.post(
        url,
        content="email=b%40example.org&name=Bo",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bare.status_code == 202 and bare.json()["status"] == "queued"
    assert queued(rt) == 2


# --- signing with JavaScript (the page's script posts the form and reads JSON) --------------------


def test_the_script_gets_202_json_for_a_good_signature(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(client, petition.id, SCRIPT_POST, name="Ann", email="ann@example.org")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert queued(rt) == 1


def test_the_script_gets_field_errors_in_plain_words(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    response = sign_in_browser(client, petition.id, SCRIPT_POST, name="", email="nope")
    body = response.json()
    assert response.status_code == 422 and body["error"] == "invalid_fields"
    assert body["messages"] == {
        "name": "Enter your name.",
        "email": "Enter an email address like name@example.org.",
    }
    assert body["message"] == "Please correct the fields marked below."
    assert queued(rt) == 0


def test_the_script_gets_a_fresh_token_when_its_form_expired(
    client: TestClient, petition: PetitionCard, rt: Runtime
) -> None:
    client.get(f"/petitions/{petition.id}", headers=PAGE)
    url = f"/petitions/{petition.id}/signatures"
    refused = client.post(
        url, data={"csrf_token": "1.00", "name": "Ann", "email": "a@example.org"}, headers=SCRIPT_POST
    )
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    fresh = refused.json()["csrf_token"]
    again = client.post(
        url, data={"csrf_token": fresh, "name": "Ann", "email": "a@example.org"}, headers=SCRIPT_POST
    )
    assert again.status_code == 202 and queued(rt) == 1


# --- the honeypot -------------------------------------------------------------------------------


def test_a_filled_honeypot_is_answered_like_any_signature_and_stored_fraudulent_uncounted(
    client: TestClient,
    petition: PetitionCard,
    rt: Runtime,
    db: psycopg.Connection[tuple[object, ...]],
    drain: Callable[[], int],
) -> None:
    bot = sign_in_browser(client, petition.id, name="Bot", email="bot@example.org", comment="buy now")
    person = sign_in_browser(client, petition.id, name="Ann", email="ann@example.org", comment="")
    assert bot.status_code == person.status_code == 303
    drain()
    assert signature_states(db) == [("ann@example.org", "validated"), ("bot@example.org", "fraudulent")]
    assert count_in_db(db, petition.id) == 2  # the starter and Ann
    assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == 2


def test_a_form_post_while_redis_is_down_gets_503_in_words_and_nothing_else_breaks(
    settings: Settings,
) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    nonce = csrf.new_nonce()
    token = csrf.make_token(settings.csrf_secret, nonce, int(time.time()))
    with TestClient(create_app(down), cookies={csrf.COOKIE: nonce}) as client:
        fields = {"csrf_token": token, "name": "Ann", "email": "ann@example.org"}
        page = client.post("/petitions/1/signatures", data=fields, headers=NO_JS_POST)
        script = client.post("/petitions/1/signatures", data=fields, headers=SCRIPT_POST)
    assert page.status_code == 503 and page.headers["retry-after"] == "1"
    assert "We could not take your signature just now." in text_of(page.text)
    assert script.status_code == 503 and script.json()["error"] == "unavailable"
    assert "try again in a minute" in script.json()["message"]
