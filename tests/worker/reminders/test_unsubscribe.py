"""Unsubscribe tokens and the intake's endpoints (GET confirms, POST and one-click POST record)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.faults.harness import PrivateRedis
from tests.helpers import TEST_SECRETS
from worker.keys import Keys
from worker.reminders.tokens import _b64, make_token, read_token
from worker.settings import Settings

SECRET = TEST_SECRETS["unsubscribe_secret"]
PendingReader = Callable[[], dict[str, int]]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    assert settings.unsubscribe_secret == SECRET
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def pending(settings: Settings, keys: Keys) -> Iterator[PendingReader]:
    r = redis.Redis.from_url(settings.redis_url)
    yield lambda: {k.decode(): int(v) for k, v in r.hgetall(keys.pending_unsubscribes).items()}
    r.close()


def forgeries() -> list[str]:
    genuine = make_token(SECRET, "ann@example.org")
    email_part, mac_part = genuine.split(".")
    other = make_token(SECRET, "bob@example.org")
    flipped = mac_part[:-1] + ("A" if mac_part[-1] != "A" else "B")
    return [
        make_token("some-other-secret", "ann@example.org"),  # signed with the wrong key
        f"{_b64(b'mallory@example.org')}.{mac_part}",  # another address, Ann's signature
        f"{email_part}.{other.split('.')[1]}",  # Ann's address, Bob's signature
        f"{email_part}.{flipped}",  # one character of the signature changed
        f"{email_part}.{mac_part}=",  # padding added
        f"{email_part}.{mac_part}.x",
        email_part,
        "",
        "not-a-token",
        "x" * 2000,
    ]


def test_a_genuine_token_names_its_address_and_nothing_else() -> None:
    token = make_token(SECRET, "ann@example.org")
    assert read_token(SECRET, token) == "ann@example.org"
    assert read_token("another-secret", token) is None


@pytest.mark.parametrize("token", forgeries())
def test_forged_or_altered_tokens_are_refused(token: str) -> None:
    assert read_token(SECRET, token) is None


@given(st.emails(), st.text(min_size=1, max_size=80))
def test_any_change_to_a_token_breaks_it(address: str, junk: str) -> None:
    token = make_token(SECRET, address)
    assert read_token(SECRET, token) == address
    for altered in (token + junk, junk + token, token[: len(token) // 2] + junk + token[len(token) // 2 :]):
        if altered != token:
            assert read_token(SECRET, altered) is None


def test_get_shows_a_confirmation_and_changes_nothing(client: TestClient, pending: PendingReader) -> None:
    token = make_token(SECRET, "ann@example.org")
    answer = client.get(f"/unsubscribe/{token}")
    assert answer.status_code == 200
    assert '<form method="post">' in answer.text and "ann@example.org" in answer.text
    assert pending() == {}


def test_post_from_the_form_records_the_unsubscribe(client: TestClient, pending: PendingReader) -> None:
    token = make_token(SECRET, "ann@example.org")
    answer = client.post(f"/unsubscribe/{token}")
    assert answer.status_code == 200 and "unsubscribed" in answer.text
    assert list(pending()) == ["ann@example.org"]
    first = pending()["ann@example.org"]
    assert client.post(f"/unsubscribe/{token}").status_code == 200  # again: still one, first time kept
    assert pending() == {"ann@example.org": first}


def test_one_click_post_from_a_mail_client_records_the_unsubscribe(
    client: TestClient,
    pending: PendingReader,
) -> None:
    token = make_token(SECRET, "bob@example.org")
    answer = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert list(pending()) == ["bob@example.org"]


@pytest.mark.parametrize("token", forgeries()[:6])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forged_token_gets_400_and_changes_nothing(
    client: TestClient,
    pending: PendingReader,
    token: str,
    method: str,
) -> None:
    answer = client.request(method, f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert answer.status_code == 400
    assert pending() == {}


def test_redis_down_gets_503_and_the_link_still_works_later(settings: Settings, keys: Keys) -> None:
    server = PrivateRedis()
    server.start()
    token = make_token(SECRET, "ann@example.org")
    try:
        with TestClient(create_app(settings.model_copy(update={"redis_url": server.url}))) as client:
            # Given Redis is down, a click on the link gets 503
            server.kill()
            answer = client.post(f"/unsubscribe/{token}")
            assert answer.status_code == 503
            # When Redis is back, the same link posted again
            server.start()
            answer = client.post(f"/unsubscribe/{token}")
        # Then it is recorded
        assert answer.status_code == 200 and "unsubscribed" in answer.text
        with redis.Redis.from_url(server.url) as r:
            assert list(r.hgetall(keys.pending_unsubscribes)) == [b"ann@example.org"]
    finally:
        server.close()


def test_links_signed_with_the_previous_secret_keep_working_during_a_rotation(
    settings: Settings, pending: PendingReader
) -> None:
    # Given a link mailed before UNSUBSCRIBE_SECRET was rotated
    old_link = f"/unsubscribe/{make_token(SECRET, 'ann@example.org')}"
    rotated = settings.model_copy(update={"unsubscribe_secret": "n" * 40})
    with TestClient(create_app(rotated)) as client:
        # Without UNSUBSCRIBE_SECRET_PREVIOUS it is refused
        assert client.post(old_link).status_code == 400
    with TestClient(create_app(rotated.model_copy(update={"unsubscribe_secret_previous": SECRET}))) as client:
        # With it, the old link and a new one both work, and a forgery still does not
        assert client.post(old_link).status_code == 200
        assert client.post(f"/unsubscribe/{make_token('n' * 40, 'bob@example.org')}").status_code == 200
        assert client.post(f"/unsubscribe/{make_token('m' * 40, 'cy@example.org')}").status_code == 400
    assert sorted(pending()) == ["ann@example.org", "bob@example.org"]


@pytest.mark.parametrize("token", ["².abc", "YW5uQGV4YW1wbGUub3Jn.é", "é.é", "YW5u\udcff.x", "\x00.\x00"])
def test_non_ascii_tokens_are_refused_not_raised(token: str) -> None:
    assert read_token(SECRET, token) is None
    assert read_token(SECRET, token, previous="p" * 40) is None
