"""The confirmation email and the one reminder to confirm, rendered from plain values. Pure.

Header safety as in `message.py`: signer and starter values go through `one_line`, the subject
carries only the starter's first name, the recipient is an `Address`. The link is the only
one in the message (besides the reminder's unsubscribe link): `PUBLIC_URL/confirm/<token>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage

from jinja2 import Environment

from worker.pipeline.wording import first_name
from worker.reminders.message import POLICY, Letterhead, one_line
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
) -> EmailMessage:
    """The email asking to confirm (`reminder`: the one reminder, with an unsubscribe link)."""
    starter = one_line(item.starter_name)
    first = first_name(starter)
    subject = (
        f"{first} is counting on you: confirm your signature" if reminder else "Please confirm your signature"
    )
    unsubscribe_url = letterhead.unsubscribe_url(item.canonical_email) if reminder else ""
    values = {
        "reminder": reminder,
        "first": first,
        "starter": starter,
        "title": one_line(item.title),
        "subject": subject,
        "confirm_url": confirm_url(letterhead, key, item.petition_id, item.receipt),
        "unsubscribe_url": unsubscribe_url,
    }
    msg = EmailMessage()
    msg["From"] = letterhead.sender
    try:
        msg["To"] = Address(display_name=one_line(item.name), addr_spec=item.email)
    except ValueError:  # an internationalised local part: the bare address (the server needs SMTPUTF8)
        msg["To"] = one_line(item.email)
    msg["Subject"] = subject
    msg["Date"] = date
    kind = "confirm-reminder" if reminder else "confirm"
    msg["Message-ID"] = f"<{kind}-{int(item.signature_id)}-{item.receipt}@{letterhead.domain}>"
    if reminder:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_TEXT.render(values), cte="quoted-printable")
    msg.add_alternative(_HTML.render(values), subtype="html", cte="quoted-printable")
    msg.policy = POLICY
    return msg
