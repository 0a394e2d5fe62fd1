"""Email-confirmed signatures end to end in one process: the intake (Starlette's TestClient),
the real drain loop, PostgreSQL, Redis and an SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import drain_everything
from tests.worker.confirm.conftest import link_path
from tests.worker.reminders.conftest import Recorder
from worker.drain.petitions import set_confirm_email
from worker.drain.registry import PetitionCard
from worker.reminders import store
from worker.reminders.confirmations import ConfirmReport
from worker.reminders.tokens import confirm_key, make_confirm_token
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]
Send = Callable[..., ConfirmReport]


def sign(client: TestClient, petition_id: int, email: str, name: str = "Ann Lee") -> dict[str, str]:
    response = client.post(f"/petitions/{petition_id}/signatures", json={"email": email, "name": name})
    assert response.status_code == 202, response.text
    return dict(response.json())


def one(db: DB, sql: str, *params: object) -> object:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def queued_entries(rt: Runtime) -> int:
    return sum(int(rt.redis.xlen(stream)) for stream in rt.keys.streams())


def counts(client: TestClient, petition_id: int) -> tuple[int, int]:
    body = client.get(f"/petitions/{petition_id}", headers={"accept": "application/json"}).json()
    return int(body["signature_count"]), int(body["awaiting_confirmation"])


def test_a_signature_counts_only_after_its_signer_follows_the_link_once(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    db: DB,
    rt: Runtime,
) -> None:
    # Given a petition in confirmation mode, when Ann signs
    body = sign(client, confirm_petition.id, "ann@example.org")
    assert body["confirmation"] == "email"
    drain()
    # then her signature is stored pending, not counted
    assert one(db, "SELECT state FROM signatures WHERE receipt = %s", body["receipt"]) == "pending"
    assert counts(client, confirm_petition.id) == (1, 1)
    # and one email asks her to confirm, naming the petition and its starter
    assert send().sent == 1
    [mail] = mailbox.to("ann@example.org")
    assert mail.message["Subject"] == "Please confirm your signature"
    assert "Save the library" in mail.text() and "Clara LONG" in mail.text()
    path = link_path(mailbox, "ann@example.org")
    assert "confirm" in path and "ann" not in path.lower()
    # A link scanner's GET shows a button and confirms nothing
    queued = queued_entries(rt)
    page = client.get(path)
    assert page.status_code == 200 and "Confirm my signature" in page.text
    assert queued_entries(rt) == queued
    drain()
    assert counts(client, confirm_petition.id) == (1, 1)
    # The POST queues the confirmation and sends her to the thank-you page
    posted = client.post(path, follow_redirects=False)
    assert posted.status_code == 303
    assert posted.headers["location"] == f"/petitions/{confirm_petition.id}/confirmed"
    assert "counted in a moment" in client.get(posted.headers["location"]).text
    drain()
    assert one(db, "SELECT state FROM signatures WHERE receipt = %s", body["receipt"]) == "validated"
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", confirm_petition.id) == 2
    assert counts(client, confirm_petition.id) == (2, 0)
    # Clicking again (twice more) changes nothing
    assert client.post(path, follow_redirects=False).status_code == 303
    assert client.post(path, follow_redirects=False).status_code == 303
    drain()
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", confirm_petition.id) == 2
    assert counts(client, confirm_petition.id) == (2, 0)
    assert one(db, "SELECT count(*) FROM refused_confirmations") == 0
    assert send().sent == 0  # nothing more owed


def test_a_forged_or_damaged_token_gets_a_plain_400_and_queues_nothing(
    client: TestClient, confirm_petition: PetitionCard, rt: Runtime, csettings: Settings
) -> None:
    genuine = make_confirm_token(confirm_key(csettings.unsubscribe_secret), confirm_petition.id, "a" * 32)
    other_key = make_confirm_token(confirm_key("another secret"), confirm_petition.id, "a" * 32)
    petition, receipt, mac = genuine.split(".")
    forged = [
        other_key,
        f"{petition}.{'b' * 32}.{mac}",  # another receipt under this MAC
        f"{int(petition) + 1}.{receipt}.{mac}",  # another petition
        genuine[:-2],  # cut short
        genuine + "A",
        f"{petition}.{receipt}",
        "..",
        "%00",
        "\u00e9t\u00e9",
        "1.a.b.c",
        "x" * 5000,
    ]
    for token in forged:
        for method in ("GET", "POST"):
            response = client.request(method, f"/confirm/{token}", follow_redirects=False)
            assert response.status_code in (400, 404), (token, method, response.status_code)
            if response.status_code == 400:
                assert "not valid" in response.text
    assert queued_entries(rt) == 0


def test_signing_again_while_pending_adds_no_row_and_resends_at_most_once_an_hour(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    db: DB,
) -> None:
    sign(client, confirm_petition.id, "ann@example.org")
    drain()
    send()
    # Signing again within the hour: no second row, no second email
    sign(client, confirm_petition.id, "Ann@Example.org")
    drain()
    assert send().sent == 0
    assert one(db, "SELECT count(*) FROM signatures WHERE petition_id = %s", confirm_petition.id) == 2
    # An hour later the email goes again, once however often she signs
    db.execute(
        "UPDATE signatures SET confirm_sent_at = now() - interval '61 minutes' WHERE state = 'pending'"
    )
    sign(client, confirm_petition.id, "ann@example.org")
    sign(client, confirm_petition.id, "ann+petitions@example.org")
    drain()
    assert send().sent == 1
    assert len(mailbox.to("ann@example.org")) == 2
    assert one(db, "SELECT count(*) FROM signatures WHERE state = 'pending'") == 1
    assert link_path(mailbox, "ann@example.org", 0) == link_path(mailbox, "ann@example.org", 1)


def test_a_confirmation_that_arrives_before_its_signature_is_stored_waits_for_it(
    client: TestClient, confirm_petition: PetitionCard, rt: Runtime, csettings: Settings, db: DB
) -> None:
    # The signature and its confirmation are both queued, the confirmation drained first
    receipt = sign(client, confirm_petition.id, "ann@example.org")["receipt"]
    token = make_confirm_token(confirm_key(csettings.unsubscribe_secret), confirm_petition.id, receipt)
    assert client.post(f"/confirm/{token}", follow_redirects=False).status_code == 303
    rt.streams.ensure_groups()
    entries = rt.streams.read("test", 100, 10)
    assert len(entries) == 2
    confirmation = [e for e in entries if b'"k":"c"' in (e.payload or b"")]
    result = rt.drainer.process(confirmation)
    # it waits: not acknowledged, nothing recorded
    assert result.acked == [] and result.outcome.waiting == confirmation
    assert one(db, "SELECT count(*) FROM refused_confirmations") == 0
    # then the signature is stored, and the confirmation, delivered again, counts it
    signature = [e for e in entries if e not in confirmation]
    rt.drainer.process(signature)
    assert one(db, "SELECT state FROM signatures WHERE receipt = %s", receipt) == "pending"
    drain_everything(rt)
    assert one(db, "SELECT state FROM signatures WHERE receipt = %s", receipt) == "validated"
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", confirm_petition.id) == 2


def test_a_confirmation_for_a_signature_that_never_comes_is_recorded_unknown(
    client: TestClient, confirm_petition: PetitionCard, drain: Callable[[], int], csettings: Settings, db: DB
) -> None:
    token = make_confirm_token(confirm_key(csettings.unsubscribe_secret), confirm_petition.id, "f" * 32)
    assert client.post(f"/confirm/{token}", follow_redirects=False).status_code == 303
    drain()  # redelivered until its last delivery, then recorded
    assert db.execute("SELECT receipt, reason FROM refused_confirmations").fetchall() == [
        ("f" * 32, "unknown")
    ]
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", confirm_petition.id) == 1


def test_switching_the_mode_keeps_counted_signatures_and_changes_new_ones(
    client: TestClient,
    make_petition: PetitionFactory,
    rt: Runtime,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    db: DB,
) -> None:
    petition = make_petition()
    assert "confirmation" not in sign(client, petition.id, "ann@example.org")
    drain()
    assert counts(client, petition.id) == (2, 0)
    set_confirm_email(rt.engine, rt.registry, petition.id, True)
    assert sign(client, petition.id, "bob@example.org")["confirmation"] == "email"
    drain()
    assert counts(client, petition.id) == (2, 1)
    send()
    bob_link = link_path(mailbox, "bob@example.org")
    set_confirm_email(rt.engine, rt.registry, petition.id, False)
    assert "confirmation" not in sign(client, petition.id, "cy@example.org")
    drain()
    assert counts(client, petition.id) == (3, 1)
    # Bob's pending signature can still be confirmed after the switch back
    client.post(bob_link)
    drain()
    assert counts(client, petition.id) == (4, 0)
    assert (
        one(db, "SELECT count(*) FROM signatures WHERE petition_id = %s AND state = 'validated'", petition.id)
        == 4
    )


def test_pending_signatures_expire_after_the_ttl_and_the_person_may_sign_again(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    db: DB,
) -> None:
    receipt = sign(client, confirm_petition.id, "ann@example.org")["receipt"]
    drain()
    send()
    old_link = link_path(mailbox, "ann@example.org")
    db.execute("UPDATE signatures SET accepted_at = now() - interval '8 days' WHERE receipt = %s", [receipt])
    assert send().expired == 1
    assert one(db, "SELECT count(*) FROM signatures WHERE receipt = %s", receipt) == 0
    assert one(db, "SELECT reason FROM rejected_signatures WHERE receipt = %s", receipt) == "expired"
    assert counts(client, confirm_petition.id) == (1, 0)
    # The old link, followed late, is recorded as expired and counts nothing
    client.post(old_link)
    drain()
    assert one(db, "SELECT reason FROM refused_confirmations WHERE receipt = %s", receipt) == "expired"
    assert counts(client, confirm_petition.id) == (1, 0)
    # She signs again: a new pending signature and a new email, whose link counts her
    sign(client, confirm_petition.id, "ann@example.org")
    drain()
    assert send().sent == 1
    client.post(link_path(mailbox, "ann@example.org"))
    drain()
    assert counts(client, confirm_petition.id) == (2, 0)


def test_one_reminder_to_confirm_goes_after_a_day_in_the_seeds_voice(
    rt: Runtime,
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    db: DB,
) -> None:
    sign(client, confirm_petition.id, "ann@example.org")
    sign(client, confirm_petition.id, "bob@example.org")
    drain()
    assert send().sent == 2
    assert send().reminded == 0  # not yet a day
    db.execute("UPDATE signatures SET accepted_at = now() - interval '25 hours' WHERE state = 'pending'")
    db.execute(
        "INSERT INTO unsubscribes (canonical_email, unsubscribed_at) VALUES ('bob@example.org', now())"
    )
    assert send().reminded == 1
    assert send().reminded == 0  # once only
    reminder = mailbox.to("ann@example.org")[-1]
    assert reminder.message["Subject"] == "Clara is counting on you: confirm your signature"
    assert "/unsubscribe/" in reminder.text()
    assert link_path(mailbox, "ann@example.org", 0) == link_path(mailbox, "ann@example.org", 1)
    assert len(mailbox.to("bob@example.org")) == 1  # unsubscribed: no reminder
    # The reminder's unsubscribe link names the signature, never the address, and works
    unsubscribe = reminder.message["List-Unsubscribe"].strip("<>")
    assert "ann" not in unsubscribe.lower() and "YW5u" not in unsubscribe  # nor its base64
    assert client.post(unsubscribe[unsubscribe.index("/unsubscribe/") :]).status_code == 200
    pending = {k.decode(): int(v) for k, v in rt.redis.hgetall(rt.keys.pending_unsubscribes).items()}
    store.move_unsubscribes(db, pending)
    assert db.execute("SELECT canonical_email FROM unsubscribes ORDER BY 1").fetchall() == [
        ("ann@example.org",),
        ("bob@example.org",),
    ]


def test_stats_and_metrics_show_pending_confirmed_expired_and_the_email_backlog(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
    rt: Runtime,
    db: DB,
) -> None:
    from worker.observability.queue_stats import QueueCollector
    from worker.observability.stats import gather

    for name in ("ann", "bob", "cy"):
        sign(client, confirm_petition.id, f"{name}@example.org")
    drain()
    totals = gather(rt.redis, rt.keys, 0).as_dict()["totals"]
    assert (totals["pending"], totals["confirmed"]) == (3, 0)
    send(confirm_batch=2)  # one email left owed
    assert gather(rt.redis, rt.keys, 0).confirm_emails_owed == 1
    scraped = {f.name: f.samples[0].value for f in QueueCollector(rt.redis, rt.keys).collect() if f.samples}
    assert scraped["sigingest_confirm_emails_owed"] == 1
    client.post(link_path(mailbox, mailbox.received[0].rcpt_tos[0]))
    db.execute("UPDATE signatures SET accepted_at = now() - interval '8 days' WHERE state = 'pending'")
    drain()
    send()
    stats = gather(rt.redis, rt.keys, 0)
    assert (stats.pending, stats.confirmed, stats.expired, stats.confirm_emails_owed) == (3, 1, 2, 0)
    assert counts(client, confirm_petition.id) == (2, 0)


def test_an_internationalised_address_is_mailed_or_failed_never_blocking_the_backlog(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Send,
    mailbox: Recorder,
) -> None:
    sign(client, confirm_petition.id, "jos\u00e9@example.org", name="Jos\u00e9")
    sign(client, confirm_petition.id, "ann@example.org")
    drain()
    report = send()
    assert report.sent + report.failed == 2 and report.stopped is None
    assert len(mailbox.to("ann@example.org")) == 1
    assert send().sent + send().failed == 0  # nothing left owed


def test_links_mailed_before_a_secret_rotation_keep_confirming_with_the_previous_secret(
    confirm_petition: PetitionCard, csettings: Settings, rt: Runtime, drain: Callable[[], int], db: DB
) -> None:
    # Given Ann's pending signature and the link mailed to her before UNSUBSCRIBE_SECRET was rotated
    with TestClient(create_app(csettings)) as client:
        receipt = sign(client, confirm_petition.id, "ann@example.org")["receipt"]
    drain()
    old_key = confirm_key(csettings.unsubscribe_secret)
    old_link = f"/confirm/{make_confirm_token(old_key, confirm_petition.id, receipt)}"
    rotated = csettings.model_copy(update={"unsubscribe_secret": "n" * 40})
    with TestClient(create_app(rotated)) as client:
        # Without UNSUBSCRIBE_SECRET_PREVIOUS it is refused, and nothing is queued
        assert client.post(old_link, follow_redirects=False).status_code == 400
        assert queued_entries(rt) == 0
    previous = rotated.model_copy(update={"unsubscribe_secret_previous": csettings.unsubscribe_secret})
    with TestClient(create_app(previous)) as client:
        # With it the old link confirms, and a link under another key still does not
        forged = make_confirm_token(confirm_key("m" * 40), confirm_petition.id, receipt)
        assert client.post(f"/confirm/{forged}", follow_redirects=False).status_code == 400
        assert client.post(old_link, follow_redirects=False).status_code == 303
    drain()
    assert one(db, "SELECT state FROM signatures WHERE receipt = %s", receipt) == "validated"
