"""Engine and transactions for SQLite (default) and PostgreSQL (production).

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions: worker
threads read a row and then write it, and a deferred SQLite transaction that
upgrades from reader to writer fails at once with "database is locked" instead of
waiting. Taking the write lock up front makes writers queue politely.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for the lock before failing, milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: A pooled PostgreSQL connection idle at least this long is pinged before use, seconds.
PING_AFTER_IDLE_SECONDS = 1.0


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, connect_timeout: float | None = None
) -> Engine:
    """An engine configured for backlane's access pattern on either backend; ``connect_timeout``
    (seconds, PostgreSQL) bounds how long opening a connection may take."""
    # sqlalchemy.create_engine looked up now, not imported: tracing's SQLAlchemy instrumentation
    # wraps it, and so traces every engine made after tracing started.
    create_engine = sqlalchemy.create_engine
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        _setup_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    connect_args = {"connect_timeout": max(1, round(connect_timeout))} if connect_timeout else {}
    engine = create_engine(parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it has sat idle for a while.

    ``pool_pre_ping`` pings on every checkout: one extra round trip per
    transaction, a quarter of a worker's time on a per-order transaction. A
    connection returned moments ago is as alive as it was then; one idle longer
    (a database restarted in the meantime, a firewall's idle cut) is pinged and,
    if dead, replaced before use, as pre-ping does. Should the server go away
    in between, the statement fails as a transient error and the item is retried.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is not None and time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc  # the pool reconnects


class Database:
    """One engine and its session factory; ``transaction()`` is the unit of work."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, connect_timeout: float | None = None
    ) -> None:
        self.url = url
        self.engine = create_db_engine(url, pool_size=pool_size, echo=echo, connect_timeout=connect_timeout)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: The same engine and pool, its connections in autocommit while checked out (statement()).
        self._autocommit: Engine | None = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else None
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection inside one transaction: for hot paths that run plain statements,
        without the ORM's unit of work (a third of a per-item actor's CPU, measured)."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A Core connection for exactly one statement, which is its own transaction.

        On PostgreSQL it runs in autocommit: one round trip, where BEGIN, the statement and
        COMMIT take three (a per-order actor reads its row and writes it once, each a single
        statement). SQLite keeps :meth:`connection`'s ``BEGIN IMMEDIATE``, which a write
        needs there to queue for the lock instead of failing."""
        if self._autocommit is None:
            with self.connection() as connection:
                yield connection
            return
        with self._autocommit.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
