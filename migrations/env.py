"""Alembic environment: the URL comes from backlane's settings (or the caller)."""

from __future__ import annotations

from alembic import context

from backlane.db.engine import create_db_engine
from backlane.db.models import Base

config = context.config

if getattr(config.cmd_opts, "autogenerate", False):
    # Autogenerate compares the models with the database: every pipeline's models must be on
    # Base, and they are once the application's modules (its pipelines) are imported.
    from backlane.app import load_app

    load_app()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from backlane.settings import get_settings

    return get_settings().database.url.get_secret_value()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(_url(), connect_timeout=config.attributes.get("connect_timeout"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
