"""The README's "Where things are" and the docs name files that exist, so a reader following
them never meets a file that moved."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A repository path in backquotes or in a drawing: worker/..., api_stub/..., tests/..., bench/...
PATH = re.compile(r"\b((?:worker|api_stub|tests|bench|docs|deploy)/[\w./-]*\w)")


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def walk_files() -> list[str]:
    """The numbered walk of "Where things are", in order, with paths completed from their folder."""
    walk = section((ROOT / "README.md").read_text(), "Where things are")
    named: list[str] = []
    for line in re.findall(r"^\d+\. .*(?:\n {4}.*)*", walk, flags=re.MULTILINE):
        first = PATH.search(line)
        assert first, f"a step that names no file: {line!r}"
        folder = first.group(1).rsplit("/", 1)[0]
        for token in re.findall(r"`([\w./-]+\.(?:py|lua))`", line):
            named.append(token if "/" in token and PATH.match(token) else f"{folder}/{token}")
    return named


def test_every_file_of_the_walk_exists() -> None:
    named = walk_files()
    assert len(named) >= 15
    assert [name for name in named if not (ROOT / name).is_file()] == []


def test_the_walk_starts_at_the_app_and_ends_at_the_commit() -> None:
    named = walk_files()
    assert named[0] == "api_stub/app.py"
    assert named.index("worker/drain/drainer.py") < named.index("worker/drain/store.py")


def test_every_path_the_readme_and_docs_name_exists() -> None:
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in PATH.findall(doc.read_text()):
            if "{" in path or "<" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
    assert missing == []
