"""A petition's own words as safe HTML: plain paragraphs, or the little Markdown a petition
needs (paragraphs, `-`/`*` lists, `**bold**`, `*emphasis*`). Everything is escaped first; no
raw HTML, link or image from the text ever reaches the page. Pure."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_BLANK_LINES = re.compile(r"\n\s*\n")
_BULLET = re.compile(r"^\s*[-*]\s+")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![*\w])\*(\S(?:.*?\S)?)\*(?![*\w])")


def _inline(text: str) -> str:
    """Escape, then turn the bold and emphasis marks into tags (the marks survive escaping)."""
    safe = str(escape(text))
    safe = _STRONG.sub(r"<strong>\1</strong>", safe)
    return _EMPHASIS.sub(r"<em>\1</em>", safe)


def _block(block: str) -> str:
    lines = [line.strip() for line in block.strip().split("\n") if line.strip()]
    if lines and all(_BULLET.match(line) for line in lines):
        items = "".join(f"<li>{_inline(_BULLET.sub('', line))}</li>" for line in lines)
        return f"<ul>{items}</ul>"
    return f"<p>{'<br>'.join(_inline(line) for line in lines)}</p>"


def render_text(text: str) -> Markup:
    """The text as HTML paragraphs and lists, escaped; empty Markup for no text."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in _BLANK_LINES.split(text) if b.strip()]
    return Markup("\n".join(_block(b) for b in blocks))
