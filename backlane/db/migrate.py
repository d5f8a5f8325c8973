"""Run the Alembic migrations (``backlane migrate``): backlane's history in ``migrations/``
and each registered pipeline's own ``migrations`` folder (:mod:`backlane.db.locations`).

A pipeline's first revision starts a branch of its own (``down_revision = None``,
``branch_labels = ("<name>",)``, ``depends_on`` the shared head it needs), so the
database is brought to every head at once and pipelines never have to order
their revisions against each other."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

from backlane.db.locations import version_locations

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    if not MIGRATIONS_DIR.is_dir():
        raise RuntimeError(f"migrations not found at {MIGRATIONS_DIR}; install backlane from its source tree")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Every registered pipeline's own folder too (backlane.db.locations); os.pathsep splits them,
    # so a path holding a space or a comma stays one path.
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", os.pathsep.join(str(folder) for folder in version_locations()).replace("%", "%%")
    )
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "heads", *, connect_timeout: float | None = None) -> None:
    """Bring the database at ``url`` (default: settings) up to ``revision``."""
    config = alembic_config(url)
    config.attributes["connect_timeout"] = connect_timeout
    command.upgrade(config, revision)
