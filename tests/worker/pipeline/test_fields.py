"""`parse_fields` answers the same through its fast path as through its per-field checks."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.pipeline.fields import InvalidFields, SignatureFields, parse_fields

texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=" \t\nab@.é\x00\x7f\u0085\ud800", max_size=12),
    st.sampled_from(["ann@example.org", " Ann Lee ", "", "   ", "SW1A 1AA", "a" * 201, "b" * 17, "c" * 65]),
)
values = st.one_of(texts, st.none(), st.booleans(), st.integers(), st.sampled_from(["on", "no", "yes"]))
forms = st.dictionaries(
    st.sampled_from(["email", "name", "postcode", "country", "opt_in", "other"]), values, max_size=6
)


def outcome(data: dict[str, object]) -> SignatureFields | dict[str, str]:
    try:
        return parse_fields(data)
    except InvalidFields as exc:
        return exc.errors


@settings(max_examples=3000, deadline=None)
@given(forms)
@example({"email": "ann@example.org", "name": "Ann"})
@example({"email": " ann@example.org ", "name": "Ann", "postcode": "  ", "country": "UK", "opt_in": True})
@example({"email": "ann@example.org", "name": "Ann", "postcode": "b" * 17})
@example({"email": "ann@example.org", "name": "Ann\x00"})
@example({"email": "ann@example.org", "name": "Ann", "opt_in": "on"})
def test_the_fast_path_gives_the_per_field_answer(data: dict[str, object]) -> None:
    # An idempotency key, even an empty one, sends the same fields through the per-field checks.
    assert outcome(data) == outcome({**data, "idempotency_key": None})


def test_the_usual_fields_are_stripped_and_kept() -> None:
    fields = parse_fields({"email": " ann@example.org ", "name": " Ann ", "postcode": " ", "opt_in": True})
    assert fields == SignatureFields("ann@example.org", "Ann", None, None, True, None)
