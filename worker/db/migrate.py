"""Run Alembic migrations programmatically (`sigingest migrate`, `make run`, tests)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def alembic_config(sqlalchemy_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("worker.db").joinpath("migrations")))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    return config


def upgrade(sqlalchemy_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Safe to run from several processes at once."""
    command.upgrade(alembic_config(sqlalchemy_url), revision)
