"""The quick domain check gives exactly email-validator's verdict and normalized domain."""

from __future__ import annotations

from email_validator import EmailSyntaxError
from email_validator.syntax import validate_email_domain_name
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.pipeline.domains import check_domain, usual_domain

LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,64}[a-zA-Z0-9])?"
ENDINGS = "local|test|invalid|arpa|onion|localhost|example|com|x1|1x|xn--zz"
domains = st.one_of(
    st.text(alphabet="abcXYZ019.-", min_size=0, max_size=40),
    st.from_regex(rf"({LABEL}\.){{1,4}}{LABEL}", fullmatch=True),
    st.from_regex(
        rf"({LABEL}\.){{1,3}}(local|test|invalid|arpa|onion|localhost|example|com|x1|1x|xn--zz)",
        fullmatch=True,
    ),
)


def reference(domain: str) -> tuple[str, str] | str:
    try:
        info = validate_email_domain_name(domain)
    except EmailSyntaxError as exc:
        return str(exc)
    return info["domain"], info["ascii_domain"]


@settings(max_examples=4000, deadline=None)
@given(domains)
@example("mail123456.example.net")
@example("Example.ORG")
@example("a" * 63 + ".com")
@example("a" * 64 + ".com")
@example(("a" * 60 + ".") * 4 + "com")
@example("ab--cd.com")
@example("xn--exmple-cua.com")
@example("a.b-.com")
@example("123.com")
@example("x.c0m")
def test_the_quick_answer_is_email_validators(domain: str) -> None:
    assert check_domain(domain) == reference(domain)


def test_the_usual_domains_take_the_quick_path() -> None:
    assert usual_domain("Mail123456.Example.NET") == "mail123456.example.net"
    assert usual_domain("gmail.com") == "gmail.com"
    for unusual in ("xn--exmple-cua.com", "exämple.com", "x.local", "localhost", "a..b.com", "a.b1"):
        assert usual_domain(unusual) is None
