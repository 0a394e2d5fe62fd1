"""No input gets a 5xx: arbitrary tokens, cookies, Origin values and paths thrown at the signing
form and the unsubscribe routes through the real app and Redis."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api_stub.app import create_app
from api_stub.pages import csrf
from tests.conftest import PetitionFactory
from worker.settings import Settings

FORM = "application/x-www-form-urlencoded"
# Header values travel as bytes; a server reads them as Latin-1, so any of these can arrive.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)
tokens = st.one_of(
    st.text(max_size=80),
    st.builds(lambda t, m: f"{t}.{m}", st.text(max_size=14), st.text(max_size=40)),
    st.sampled_from(["².abc", "١٢٣.abc", "1790000000.é", "1790000000." + "0" * 31 + "²"]),
)
paths = st.one_of(st.text(max_size=60).map(lambda t: quote(t, safe="")), st.binary(max_size=40).map(quote))
quiet = hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_csrf_token_with_a_non_ascii_digit_or_mac_is_refused_not_a_500(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        page = client.get(f"/petitions/{petition.id}", headers={"accept": "text/html"})
        assert client.cookies.get(csrf.COOKIE)
        for token in ("².abc", "1790000000.é" + "a" * 31):
            answer = client.post(
                f"/petitions/{petition.id}/signatures",
                content=urlencode({"name": "Ann", "email": "ann@example.org", "csrf_token": token}),
                headers={"content-type": FORM, "origin": "http://testserver"},
            )
            assert answer.status_code == 403, (token, answer.status_code)
        assert page.status_code == 200


def test_no_token_cookie_origin_or_path_gets_a_5xx(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        @quiet
        @given(
            token=tokens,
            cookie=header_text,
            origin=header_text,
            path=paths,
            method=st.sampled_from(["GET", "POST"]),
        )
        @example(token="².abc", cookie="0" * 32, origin="http://testserver", path="x", method="POST")
        def check(token: str, cookie: str, origin: str, path: str, method: str) -> None:
            headers = {
                "content-type": FORM,
                "origin": origin.encode("latin-1"),
                "cookie": f"{csrf.COOKIE}={cookie}".encode("latin-1"),
            }
            body = urlencode(
                {"name": "Ann", "email": "ann@example.org", "csrf_token": token, "comment": token}
            )
            answers = [
                client.post(f"/petitions/{petition.id}/signatures", content=body, headers=headers),  # type: ignore[arg-type]
                client.request(method, f"/unsubscribe/{quote(token, safe='')}", headers=headers),  # type: ignore[arg-type]
                client.request(method, f"/unsubscribe/{path}"),
                client.get(f"/petitions/{path}", headers={"accept": "text/html"}),
                client.post(f"/petitions/{path}/signatures", content=body, headers=headers),  # type: ignore[arg-type]
            ]
            assert [a.status_code for a in answers if a.status_code >= 500] == [], [a.text for a in answers]

        check()
