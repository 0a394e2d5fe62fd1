"""The confirmation email and the one reminder to confirm, rendered from plain values. Pure.

Header safety as in `message.py`: signer and starter values go through `one_line`, the subject
carries only the starter's first name, the recipient is quoted by `formataddr`. The link is the only
one in the message (besides the reminder's unsubscribe link): `PUBLIC_URL/confirm/<token>`.
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr

from jinja2 import Environment

from worker.pipeline.wording import first_name
from worker.reminders.message import Letterhead, one_line
from worker.reminders.tokens import make_confirm_token

TEXT = """\
{% if reminder %}{{ first }} is counting on you: confirm your signature

You signed “{{ title }}”, started by {{ starter }}, but your signature is not counted yet.
{% else %}Please confirm your signature

Thank you for signing “{{ title }}”, started by {{ starter }}.
{% endif %}
To count it, open this link and press the button:
{{ confirm_url }}

If you did not sign, do nothing: an unconfirmed signature is never counted and is deleted after a week.
{% if unsubscribe_url %}
Unsubscribe from reminders: {{ unsubscribe_url }}
{% endif %}"""

HTML = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family: sans-serif; line-height: 1.5">
{% if reminder %}<p><strong>{{ first }} is counting on you: confirm your signature</strong></p>
<p>You signed “{{ title }}”, started by {{ starter }}, but your signature is not counted yet.</p>
{% else %}<p><strong>Please confirm your signature</strong></p>
<p>Thank you for signing “{{ title }}”, started by {{ starter }}.</p>
{% endif %}
<p><a href="{{ confirm_url }}">Confirm my signature</a></p>
<p style="font-size: small; color: #555">If you did not sign, do nothing: an unconfirmed signature
is never counted and is deleted after a week.{% if unsubscribe_url %}
<a href="{{ unsubscribe_url }}">Unsubscribe from reminders</a>{% endif %}</p>
</body></html>
"""

_TEXT = Environment(autoescape=False, keep_trailing_newline=True).from_string(TEXT)
_HTML = Environment(autoescape=True, keep_trailing_newline=True).from_string(HTML)


@dataclass(frozen=True, slots=True)
class ToConfirm:
    """One pending signature owed an email."""

    signature_id: int
    receipt: str
    petition_id: int
    email: str
    name: str
    canonical_email: str
    title: str
    starter_name: str


def confirm_url(letterhead: Letterhead, key: bytes, petition_id: int, receipt: str) -> str:
    return f"{letterhead.public_url.rstrip('/')}/confirm/{make_confirm_token(key, petition_id, receipt)}"


def render_confirmation(
    item: ToConfirm, letterhead: Letterhead, key: bytes, date: str, *, reminder: bool = False
) -> bytes:
    """The email asking to confirm (`reminder`: the one reminder, with an unsubscribe link), as
    the bytes to send: plain text and HTML alternatives, quoted-printable, in UTF-8.

    Written directly rather than through `EmailMessage`: the email package took ~2-9 ms per
    message (header parsing and folding), which alone held one mail process under 500 emails/s;
    this takes ~0.1 ms. Every header value is `one_line`d; non-ASCII header text is RFC 2047
    encoded; the display name is quoted by `formataddr`."""
    starter = one_line(item.starter_name)
    first = first_name(starter)
    subject = (
        f"{first} is counting on you: confirm your signature" if reminder else "Please confirm your signature"
    )
    unsubscribe_url = letterhead.signature_unsubscribe_url(item.signature_id) if reminder else ""
    values = {
        "reminder": reminder,
        "first": first,
        "starter": starter,
        "title": one_line(item.title),
        "subject": subject,
        "confirm_url": confirm_url(letterhead, key, item.petition_id, item.receipt),
        "unsubscribe_url": unsubscribe_url,
    }
    kind = "confirm-reminder" if reminder else "confirm"
    headers = [
        ("From", _header(letterhead.sender)),
        ("To", _to(item.name, item.email)),
        ("Subject", _header(subject)),
        ("Date", date),
        ("Message-ID", f"<{kind}-{int(item.signature_id)}-{item.receipt}@{letterhead.domain}>"),
    ]
    if reminder:
        headers += [
            ("List-Unsubscribe", f"<{unsubscribe_url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    boundary = f"=_{uuid.uuid4().hex}"
    lines = [f"{name}: {value}" for name, value in headers]
    lines += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
    head = "\r\n".join(lines).encode("utf-8")
    parts = [_part(boundary, "plain", _TEXT.render(values)), _part(boundary, "html", _HTML.render(values))]
    return head + b"\r\n" + b"".join(parts) + f"--{boundary}--\r\n".encode()


def _to(name: str, address: str) -> str:
    """The recipient, the name quoted; an internationalised address goes bare (it is sent as
    UTF-8 under SMTPUTF8, which `formataddr` does not write)."""
    address = one_line(address)
    if not address.isascii():
        return f"<{address}>"
    return formataddr((one_line(name), address), charset="utf-8")


def _header(value: str) -> str:
    value = one_line(value)
    return value if value.isascii() else Header(value, "utf-8").encode()


def _part(boundary: str, subtype: str, body: str) -> bytes:
    encoded = binascii.b2a_qp(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return (
        (
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        + encoded
        + b"\r\n"
    )
