"""The reminder email, rendered from plain values. Pure: no I/O, no clock.

Header safety: every value that comes from a signer or a starter goes through `one_line` before it
reaches a header (control characters, line and paragraph separators become spaces), the subject
carries only the starter's first name, and the recipient is an `Address` object, so the email
package quotes it. A name or title with a newline can never add a header.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr

from jinja2 import Environment

from worker.pipeline.wording import call_to_action, first_name
from worker.reminders.tokens import make_signature_token, make_token

SUBJECT = "{first} is counting on you"

TEXT = """\
Today: {{ first }} is counting on you

{{ starter }} needs your help with “{{ title }}”.
{{ call_to_action }}

Sign the petition: {{ sign_url }}

You get this email because you signed a petition and asked to hear about others.
Unsubscribe: {{ unsubscribe_url }}
"""

HTML = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ first }} is counting on you</title></head>
<body style="font-family: sans-serif; line-height: 1.5">
<p><strong>Today: {{ first }} is counting on you</strong></p>
<p>{{ starter }} needs your help with “{{ title }}”.<br>
{{ call_to_action }}</p>
<p><a href="{{ sign_url }}">Sign the petition</a></p>
<p style="font-size: small; color: #555">You get this email because you signed a petition and asked
to hear about others. <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""

_text_env = Environment(autoescape=False, keep_trailing_newline=True)
_html_env = Environment(autoescape=True, keep_trailing_newline=True)
_TEXT = _text_env.from_string(TEXT)
_HTML = _html_env.from_string(HTML)
_SPACES = re.compile(r"\s+")
# Headers are folded only past RFC 5322's hard limit: the email package would otherwise turn a long
# List-Unsubscribe URL into encoded words, which mail clients do not read as a URL.
POLICY = default.clone(max_line_length=998)


def one_line(text: str) -> str:
    """`text` with control and separator characters (CR, LF, NEL, U+2028...) turned into single
    spaces: safe to place in a header or on one line of a body."""
    cleaned = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return _SPACES.sub(" ", cleaned).strip()


@dataclass(frozen=True, slots=True)
class Reminder:
    """One email to render. `signature_count` is the live count read just before rendering."""

    delivery_id: int
    canonical_email: str
    recipient_email: str
    recipient_name: str
    petition_id: int
    title: str
    starter_name: str
    signature_count: int


@dataclass(frozen=True, slots=True)
class Letterhead:
    """What every reminder shares: sender, public base URL, unsubscribe key."""

    sender: str
    public_url: str
    unsubscribe_secret: str

    def sign_url(self, petition_id: int) -> str:
        return f"{self.public_url.rstrip('/')}/petitions/{int(petition_id)}"

    def unsubscribe_url(self, delivery_id: int) -> str:
        """The delivery's link: it names the delivery row, never the address."""
        token = make_token(self.unsubscribe_secret, delivery_id)
        return f"{self.public_url.rstrip('/')}/unsubscribe/{token}"

    def signature_unsubscribe_url(self, signature_id: int) -> str:
        """The link in the reminder to confirm a signature: it names the row, never the address."""
        token = make_signature_token(self.unsubscribe_secret, signature_id)
        return f"{self.public_url.rstrip('/')}/unsubscribe/{token}"

    @property
    def domain(self) -> str:
        return parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"


def subject(reminder: Reminder) -> str:
    return SUBJECT.format(first=one_line(first_name(one_line(reminder.starter_name))))


def render(reminder: Reminder, letterhead: Letterhead, date: str) -> EmailMessage:
    """The message: plain text and HTML alternatives, RFC 8058 one-click unsubscribe headers,
    and a Message-ID fixed per delivery (so a retried send can be recognised downstream)."""
    starter = one_line(reminder.starter_name)
    unsubscribe_url = letterhead.unsubscribe_url(reminder.delivery_id)
    values = {
        "first": first_name(starter),
        "starter": starter,
        "title": one_line(reminder.title),
        # "Join Clara and 262 supporters today.", or "Be the first to join Clara today."
        "call_to_action": call_to_action(starter, "open", reminder.signature_count),
        "sign_url": letterhead.sign_url(reminder.petition_id),
        "unsubscribe_url": unsubscribe_url,
    }
    msg = EmailMessage()
    msg["From"] = letterhead.sender
    msg["To"] = Address(display_name=one_line(reminder.recipient_name), addr_spec=reminder.recipient_email)
    msg["Subject"] = subject(reminder)
    msg["Date"] = date
    msg["Message-ID"] = f"<reminder-{int(reminder.delivery_id)}@{letterhead.domain}>"
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_TEXT.render(values), cte="quoted-printable")
    msg.add_alternative(_HTML.render(values), subtype="html", cte="quoted-printable")
    msg.policy = POLICY  # after the bodies: they keep quoted-printable's 76-character lines
    return msg
