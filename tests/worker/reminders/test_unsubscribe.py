"""Unsubscribe tokens and the intake's endpoints (GET confirms, POST and one-click POST record)."""

from __future__ import annotations

import binascii
import contextlib
from base64 import b64encode, urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Iterator
from urllib.parse import quote

import psycopg
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.faults.harness import PrivateRedis
from tests.helpers import TEST_SECRETS
from tests.worker.reminders.conftest import PUBLIC_URL, Received, Recorder, Runner, Signer
from worker.keys import Keys
from worker.pipeline.emails import canonical_email
from worker.reminders.tokens import (
    AddressToken,
    DeliveryToken,
    _address_mac,
    _b64,
    make_token,
    pending_field,
    read_token,
)
from worker.settings import Settings

SECRET = TEST_SECRETS["unsubscribe_secret"]
PendingReader = Callable[[], dict[str, int]]
Db = psycopg.Connection[tuple[object, ...]]


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


def legacy_token(secret: str, canonical_email: str) -> str:
    """A link in the old format (the address in base64), as emails sent before still carry."""
    return f"{_b64(canonical_email.encode())}.{_b64(_address_mac(secret, canonical_email))}"


def forgeries() -> list[str]:
    genuine = make_token(SECRET, 41)
    id_part, mac_part = genuine.split(".")
    other = make_token(SECRET, 42)
    flipped = mac_part[:-1] + ("A" if mac_part[-1] != "A" else "B")
    old = legacy_token(SECRET, "ann@example.org")
    return [
        make_token("some-other-secret", 41),  # signed with the wrong key
        f"42.{mac_part}",  # another delivery, 41's signature
        f"{id_part}.{other.split('.')[1]}",  # 41, 42's signature
        f"{id_part}.{flipped}",  # one character of the signature changed
        f"{id_part}.{mac_part}=",  # padding added
        f"{id_part}.{mac_part}.x",
        f"041.{mac_part}",  # another spelling of the same id
        f"+41.{mac_part}",
        f"{_b64(b'41')}.{mac_part}",  # the id read as an old link's base64
        f"{_b64(b'mallory@example.org')}.{old.split('.')[1]}",  # old link: another address
        legacy_token("some-other-secret", "ann@example.org"),
        id_part,
        "",
        "not-a-token",
        "x" * 2000,
    ]


def test_a_genuine_token_names_its_delivery_and_nothing_else() -> None:
    token = make_token(SECRET, 41)
    assert read_token(SECRET, token) == DeliveryToken(41)
    assert read_token("another-secret", token) is None


def test_an_old_link_with_the_address_still_works_but_none_is_made() -> None:
    old = legacy_token(SECRET, "ann@example.org")
    assert read_token(SECRET, old) == AddressToken("ann@example.org")
    assert pending_field(AddressToken("ann@example.org")) == "ann@example.org"
    assert pending_field(DeliveryToken(41)) == "delivery:41"


@pytest.mark.parametrize("token", forgeries())
def test_forged_or_altered_tokens_are_refused(token: str) -> None:
    assert read_token(SECRET, token) is None


@given(st.integers(min_value=1, max_value=2**63 - 1), st.text(min_size=1, max_size=80))
def test_any_change_to_a_token_breaks_it(delivery_id: int, junk: str) -> None:
    token = make_token(SECRET, delivery_id)
    assert read_token(SECRET, token) == DeliveryToken(delivery_id)
    for altered in (token + junk, junk + token, token[: len(token) // 2] + junk + token[len(token) // 2 :]):
        if altered != token:
            assert read_token(SECRET, altered) is None


@given(st.text(max_size=200))
def test_any_text_is_read_as_no_one_without_raising(text: str) -> None:
    assert read_token(SECRET, text) is None
    assert read_token(SECRET, f"41.{text}") is None and read_token(SECRET, f"{text}.{text}") is None


def test_get_shows_a_confirmation_and_changes_nothing(client: TestClient, pending: PendingReader) -> None:
    token = make_token(SECRET, 41)
    answer = client.get(f"/unsubscribe/{token}")
    assert answer.status_code == 200
    assert '<form method="post">' in answer.text
    assert pending() == {}


def test_post_from_the_form_records_the_unsubscribe(client: TestClient, pending: PendingReader) -> None:
    token = make_token(SECRET, 41)
    answer = client.post(f"/unsubscribe/{token}")
    assert answer.status_code == 200 and "unsubscribed" in answer.text
    assert list(pending()) == ["delivery:41"]
    first = pending()["delivery:41"]
    assert client.post(f"/unsubscribe/{token}").status_code == 200  # again: still one, first time kept
    assert pending() == {"delivery:41": first}


def test_an_old_link_posted_records_its_address(client: TestClient, pending: PendingReader) -> None:
    assert client.post(f"/unsubscribe/{legacy_token(SECRET, 'ann@example.org')}").status_code == 200
    assert list(pending()) == ["ann@example.org"]


def test_one_click_post_from_a_mail_client_records_the_unsubscribe(
    client: TestClient,
    pending: PendingReader,
) -> None:
    token = make_token(SECRET, 7)
    answer = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert list(pending()) == ["delivery:7"]


@pytest.mark.parametrize("token", forgeries()[:11])
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
    token = make_token(SECRET, 41)
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
            assert list(r.hgetall(keys.pending_unsubscribes)) == [b"delivery:41"]
    finally:
        server.close()


def test_links_signed_with_the_previous_secret_keep_working_during_a_rotation(
    settings: Settings, pending: PendingReader
) -> None:
    # Given a link mailed before UNSUBSCRIBE_SECRET was rotated
    old_link = f"/unsubscribe/{make_token(SECRET, 7)}"
    rotated = settings.model_copy(update={"unsubscribe_secret": "n" * 40})
    with TestClient(create_app(rotated)) as client:
        # Without UNSUBSCRIBE_SECRET_PREVIOUS it is refused
        assert client.post(old_link).status_code == 400
    with TestClient(create_app(rotated.model_copy(update={"unsubscribe_secret_previous": SECRET}))) as client:
        # With it, the old link and a new one both work, and a forgery still does not
        assert client.post(old_link).status_code == 200
        assert client.post(f"/unsubscribe/{make_token('n' * 40, 8)}").status_code == 200
        assert client.post(f"/unsubscribe/{make_token('m' * 40, 9)}").status_code == 400
    assert sorted(pending()) == sorted(pending_field(DeliveryToken(n)) for n in (7, 8))


@pytest.mark.parametrize("token", ["².abc", "YW5uQGV4YW1wbGUub3Jn.é", "é.é", "YW5u\udcff.x", "\x00.\x00"])
def test_non_ascii_tokens_are_refused_not_raised(token: str) -> None:
    assert read_token(SECRET, token) is None
    assert read_token(SECRET, token, previous="p" * 40) is None


def unsubscribe_link(received: Received) -> str:
    """The link of an emailed reminder, the same in the header and in the text."""
    link = received.message["List-Unsubscribe"].strip("<>")
    assert f"Unsubscribe: {link}" in received.text()
    return str(link)


def spellings(address: str) -> list[str]:
    """The address as it could sit in a URL: as typed, lowercased, canonical, base64 of each."""
    forms = {address, address.lower(), canonical_email(address)}
    encoded = [codec(form.encode()).decode() for form in forms for codec in (b64encode, urlsafe_b64encode)]
    return sorted(forms | {e for e in encoded} | {e.rstrip("=") for e in encoded} | {quote(f) for f in forms})


def test_an_emailed_link_hides_the_address_and_unsubscribes_its_person_only(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    # Given Ann and Bob each got a reminder
    clara = make_petition("Clara's", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "Ann.Lee+news@Example.org", "Ann Lee", hours_ago=100)
    sign(old.id, "bob@example.org", "Bob Stone", hours_ago=100)
    assert run().sent == 2
    link = unsubscribe_link(mailbox.to("Ann.Lee+news@Example.org")[0])

    # Then nothing in Ann's link leads back to her address
    assert link.startswith(f"{PUBLIC_URL}/unsubscribe/")
    for spelling in spellings("Ann.Lee+news@Example.org"):
        assert spelling not in link
    named = link.rpartition("/")[2].split(".")[0]  # an old link's base64 address sat here
    with contextlib.suppress(binascii.Error):
        assert b"@" not in urlsafe_b64decode(named + "=" * (-len(named) % 4))

    # When she follows it through the intake: the page shows no address, the button records it
    path = link.removeprefix(PUBLIC_URL)
    with TestClient(create_app(rsettings)) as client:
        page = client.get(path)
        assert page.status_code == 200 and "example.org" not in page.text.lower()
        answer = client.post(path)
        assert answer.status_code == 200 and "example.org" not in answer.text.lower()

    # And a new petition is reminded to everyone (no minimum interval between reminders)
    third = make_petition("Fix the bridge", "Hal HOLT")
    sign(third.id, "hal@example.org", opt_in=False)
    report = run(reminder_min_interval=0)

    # Then Bob gets it and Ann does not: she, and only she, is unsubscribed
    assert report.sent == 1
    assert [m.rcpt_tos for m in mailbox.received[2:]] == [["bob@example.org"]]
    assert [r[0] for r in db.execute("SELECT canonical_email FROM unsubscribes")] == ["ann.lee@example.org"]


def test_an_old_link_with_the_address_still_unsubscribes_through_a_run(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    clara = make_petition("Clara's", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    sign(old.id, "bob@example.org", hours_ago=100)
    with TestClient(create_app(rsettings)) as client:
        token = legacy_token(rsettings.unsubscribe_secret, "ann@example.org")
        assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert run().sent == 1
    assert mailbox.recipients() == ["bob@example.org"]
    assert [r[0] for r in db.execute("SELECT canonical_email FROM unsubscribes")] == ["ann@example.org"]
