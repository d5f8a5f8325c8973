"""Is the database there, reachable and migrated? Asked without ever creating it.

The worker and the clock ask before they start (and refuse to start on a
database without backlane's schema), ``backlane status`` and the worker's
``/health`` ask to report "not migrated" instead of "unreachable", and commands
ask before they touch tables. A SQLite URL naming a file that does not exist is
answered from the file system: opening it would create an empty database.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from backlane.db.engine import parse_database_url, pg_connect_args
from backlane.problems import (
    EXIT_UNAVAILABLE,
    Problem,
    database_problem,
    missing_sqlite_file,
    not_migrated,
    redact_url,
)

#: What :func:`schema_state` found.
OK, MISSING, NOT_MIGRATED, BEHIND, UNREACHABLE, REFUSED = (
    "ok",
    "missing",
    "not migrated",
    "behind",
    "unreachable",
    "refused",
)


@dataclass(frozen=True)
class SchemaState:
    state: str
    #: The database's Alembic revision, when it has one.
    revision: str | None = None
    #: Why it is not OK: one line naming the fix.
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def reachable(self) -> bool:
        return self.state not in (UNREACHABLE, REFUSED)


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (None: not SQLite, or an in-memory database)."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


@functools.cache
def _heads() -> tuple[frozenset[str], frozenset[str]]:
    """(head revisions, every revision) of the migrations shipped with this backlane (read once:
    /health asks on every probe)."""
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(logging.WARNING)  # importing it says "setup plugin ..." at INFO, 7 times
    try:
        from alembic.script import ScriptDirectory

        from backlane.db.migrate import alembic_config

        scripts = ScriptDirectory.from_config(alembic_config())
        return frozenset(scripts.get_heads()), frozenset(rev.revision for rev in scripts.walk_revisions())
    except Exception:  # no migrations beside an installed wheel: only "is there a schema" can be asked
        return frozenset(), frozenset()
    finally:
        alembic_logger.setLevel(level)


def _throwaway_engine(url: str, path: Path | None, connect_timeout: float) -> Engine:
    """An engine for one check, without a pool: SQLite read-only (never creating the file)."""
    if path is not None:
        return create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=connect_timeout),
            poolclass=NullPool,
        )
    parsed = parse_database_url(url)
    return create_engine(parsed, poolclass=NullPool, connect_args=pg_connect_args(parsed, connect_timeout))


def schema_state(url: str, *, connect_timeout: float = 5.0, engine: Engine | None = None) -> SchemaState:
    """Whether the database at ``url`` is reachable and at the latest migration; never creates it.

    ``engine``: ask through this (pooled) engine for ``url`` and leave it open, instead of a
    throwaway one: the worker's /health asks again and again and must not open a connection
    each time. Ignored for SQLite, whose check opens the file read-only (never creating it)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return SchemaState(MISSING, problem=missing_sqlite_file(url, str(path.resolve())))
    shared = engine is not None and path is None
    if not shared:
        engine = _throwaway_engine(url, path, connect_timeout)
    assert engine is not None
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" not in tables:
                return SchemaState(NOT_MIGRATED, problem=not_migrated(url, "no alembic_version table"))
            revisions = {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}
    except Exception as exc:
        problem = database_problem(exc, url) or Problem(f"database check failed: {exc}", EXIT_UNAVAILABLE)
        if "backlane migrate" in problem.line:
            return SchemaState(NOT_MIGRATED, problem=problem)
        return SchemaState(REFUSED if problem.status != EXIT_UNAVAILABLE else UNREACHABLE, problem=problem)
    finally:
        if not shared:
            engine.dispose()
    revision = ",".join(sorted(revisions)) or None
    heads, known = _heads()
    if not revisions:
        return SchemaState(NOT_MIGRATED, problem=not_migrated(url, "alembic_version is empty"))
    if heads and revisions != heads and revisions <= known:
        line = (
            f"the database at {redact_url(url)} is at revision {revision}, this backlane needs "
            f"{','.join(sorted(heads))}: run `backlane migrate`"
        )
        return SchemaState(BEHIND, revision, Problem(line, EXIT_UNAVAILABLE))
    return SchemaState(OK, revision)
