"""A copied Settings derives its URLs from its own fields, not from the original's."""

from __future__ import annotations

from worker.settings import Settings


def test_a_copy_with_another_database_url_derives_urls_from_the_new_one() -> None:
    original = Settings.from_env({}, database_url="postgresql://db-one:5432/one")
    assert original.sqlalchemy_url.endswith("db-one:5432/one")  # derived once before copying

    copy = original.model_copy(update={"database_url": "postgresql://db-two:5432/two"})

    assert copy.sqlalchemy_url == "postgresql+psycopg://db-two:5432/two"
    assert copy.libpq_url == "postgresql://db-two:5432/two"
