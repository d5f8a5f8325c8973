"""Run the Alembic migrations in ``migrations/`` (``backlane migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    if not MIGRATIONS_DIR.is_dir():
        raise RuntimeError(f"migrations not found at {MIGRATIONS_DIR}; install backlane from its source tree")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "heads", *, connect_timeout: float | None = None) -> None:
    """Bring the database at ``url`` (default: settings) up to ``revision``."""
    config = alembic_config(url)
    config.attributes["connect_timeout"] = connect_timeout
    command.upgrade(config, revision)
