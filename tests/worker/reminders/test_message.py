"""What the email says and how it is built: escaping, header injection, pure helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import Recorder, Runner, Signer
from worker.reminders.message import Letterhead, Reminder, one_line, render, subject

LETTERHEAD = Letterhead("Petitions <reminders@example.org>", "https://p.example.org/", "k")
EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}


def test_names_and_titles_are_escaped_in_html_and_kept_as_typed_in_text(
    make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder
) -> None:
    title = '<script>alert("x")</script> & <b>Bridges</b>'
    petition = make_petition(title, "Clara <i>LONG</i>")
    old = make_petition("Old", "Olga OAK")
    sign(petition.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    run()
    [received] = mailbox.received
    html = received.html()
    assert "<script>" not in html and "<b>Bridges" not in html and "<i>LONG" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Bridges&lt;/b&gt;" in html
    assert "Clara &lt;i&gt;LONG&lt;/i&gt; needs your help" in html
    assert f"Clara <i>LONG</i> needs your help with “{title}”." in received.text()


@pytest.mark.parametrize(
    ("starter", "recipient_name", "title"),
    [
        ("Clara\r\nBcc: evil@example.net LONG", "Ann", "Save it"),
        ("Clara LONG", "Ann\r\nBcc: evil@example.net", "Save it\r\nBcc: evil@example.net"),
        ("Clara\nX-Injected: yes", "Ann\rX-Injected: yes", "T\u2028X-Injected: yes"),
        ("Clara\x85X-Injected: yes", "Ann\x0b\x1cX-Injected: yes", "Title\n\nX-Injected: yes"),
    ],
)
def test_a_newline_in_a_name_or_title_never_adds_a_header_or_a_recipient(
    make_petition: PetitionFactory,
    sign: Signer,
    run: Runner,
    mailbox: Recorder,
    starter: str,
    recipient_name: str,
    title: str,
) -> None:
    petition = make_petition(title, starter)
    old = make_petition("Old", "Olga OAK")
    sign(petition.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", recipient_name, hours_ago=100)
    assert run().sent == 1
    [received] = mailbox.received
    assert received.rcpt_tos == ["ann@example.org"]
    msg = received.message
    assert set(msg.keys()) == EXPECTED_HEADERS
    assert msg["Subject"] == "Clara is counting on you"
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.org"]
    raw_head = received.content.split(b"\r\n\r\n", 1)[0]
    assert not [line for line in raw_head.splitlines() if line.lower().startswith((b"bcc:", b"x-injected:"))]


def reminder(**changes: object) -> Reminder:
    base = dict(
        delivery_id=7,
        canonical_email="ann@example.org",
        recipient_email="ann@example.org",
        recipient_name="Ann Lee",
        petition_id=3,
        title="Save the library",
        starter_name="Clara LONG",
        signature_count=263,
    )
    base.update(changes)
    return Reminder(**base)  # type: ignore[arg-type]


def body_text(**changes: object) -> str:
    text = render(reminder(**changes), LETTERHEAD, "d").get_body(("plain",))
    assert text is not None
    return str(text.get_content())  # type: ignore[attr-defined]


def test_the_nudge_counts_everyone_but_the_starter() -> None:
    assert "Join Clara and 262 supporters today." in body_text()
    assert "Join Clara and 17,599 supporters today." in body_text(signature_count=17_600)
    assert "Join Clara and 1 other supporter today." in body_text(signature_count=2)
    # While Clara is the only signer, no "Join Clara and 0 supporters"
    assert "Be the first to join Clara today." in body_text(signature_count=1)
    assert " 0 supporters" not in body_text(signature_count=1)


def test_links_use_the_public_url_and_the_message_id_is_fixed_per_delivery() -> None:
    msg = render(reminder(), LETTERHEAD, "d")
    assert msg["Message-ID"] == "<reminder-7@example.org>"
    assert msg["List-Unsubscribe"].startswith("<https://p.example.org/unsubscribe/")
    assert "\n" not in str(msg["List-Unsubscribe"])  # long URL not folded into encoded words
    assert "https://p.example.org/petitions/3" in msg.as_string()


@given(st.text())
def test_one_line_leaves_no_line_break_or_control_character(text: str) -> None:
    cleaned = one_line(text)
    assert not any(ch in cleaned for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")
    assert cleaned == cleaned.strip()


@given(st.text(min_size=1))
def test_a_subject_is_always_a_single_line(name: str) -> None:
    assert "\n" not in subject(reminder(starter_name=name)) and "\r" not in subject(
        reminder(starter_name=name)
    )
