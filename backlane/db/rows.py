"""Lock state rows, creating them first if needed, on SQLite and PostgreSQL alike.

Breakers and rate limits are read-modify-write: two processes must never both
read "one trial left" and both take it. ``INSERT … ON CONFLICT DO NOTHING``
makes the row exist without racing, and ``SELECT … FOR UPDATE`` (PostgreSQL; on
SQLite the ``BEGIN IMMEDIATE`` transaction already holds the write lock) makes
the rest of the transaction the only writer of that row.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")


def _insert(session: Session, model: type[Any]) -> Any:
    """INSERT with ON CONFLICT DO NOTHING for the session's backend (both spell it the same)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model)


def locked_row(session: Session, model: type[T], key: dict[str, Any], defaults: dict[str, Any]) -> T:
    """The row of ``model`` with primary key ``key``, locked for this transaction."""
    session.execute(_insert(session, model).values(**key, **defaults).on_conflict_do_nothing())
    query = select(model).filter_by(**key).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one()


def peek_row(session: Session, model: type[T], key: dict[str, Any]) -> T | None:
    """The row without a lock (a cheap look for the common "nothing to do" case)."""
    return session.scalars(select(model).filter_by(**key)).one_or_none()


def insert_missing(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Insert the rows whose primary key is not there yet; leave existing ones alone."""
    if not rows:
        return
    session.execute(_insert(session, model).values(rows).on_conflict_do_nothing())
