"""`unprintable` is exactly "has a character of Unicode category Cc or Cs"."""

from __future__ import annotations

import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.pipeline.fields import unprintable


def by_category(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def test_every_code_point_is_classified_as_unicodedata_does() -> None:
    for point in range(sys.maxunicode + 1):
        ch = chr(point)
        assert unprintable(ch) == by_category(ch), hex(point)


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=50))
def test_text_is_classified_as_unicodedata_does(text: str) -> None:
    assert unprintable(text) == by_category(text)
