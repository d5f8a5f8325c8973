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
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for the lock before failing, milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: A pooled PostgreSQL connection idle at least this long is pinged before use, seconds.
PING_AFTER_IDLE_SECONDS = 1.0
#: libpq TCP settings of every PostgreSQL connection (a key the URL's query names wins): a
#: connection to a host that died or was cut off (a failed-over primary) errors out within
#: about 20 s instead of waiting for the kernel's retransmissions (~15 min) or, idle, for ever;
#: the pool then reconnects and the multi-host URL finds the new primary.
PG_TCP_ARGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,  # ms: sent data unacknowledged this long ends the connection
}


def _split_host_list(url: URL) -> URL:
    """``?host=a:5432,b:5432`` (libpq's multi-host form) as SQLAlchemy's ``host=a:5432&host=b:5432``.

    SQLAlchemy passes one ``host`` value holding commas through as one host name and a port of
    ``,`` (so libpq tried a host called ``a:5432,b:5432``); given as a tuple, it gives psycopg
    ``host=a,b port=5432,5432``. ``host=a,b&port=5432,5432`` and the repeated ``host=`` form
    already pass unchanged."""
    host = url.query.get("host")
    if isinstance(host, str) and "," in host and "port" not in url.query:
        return url.update_query_dict({"host": tuple(part.strip() for part in host.split(","))})
    return url


def parse_database_url(url: str) -> URL:
    """``url`` parsed for backlane's engines: ``postgresql://`` uses psycopg 3, and a multi-host
    URL in either libpq form (``postgresql://u:p@a:5432,b:5432/db`` or ``...@/db?host=a:5432,b:5432``)
    keeps every host, with its ``target_session_attrs``."""
    head, sep, rest = url.partition("://")
    if sep and head.startswith("postgresql"):
        netloc, _, tail = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if "," in hosts:  # libpq's host list in the authority part, which make_url cannot parse
            tail, _, query = tail.partition("?")
            listed = "&".join(f"host={h.strip()}" for h in hosts.split(",") if h.strip())
            url = f"{head}://{userinfo}{at}/{tail}?{listed}{'&' + query if query else ''}"
    parsed = _split_host_list(make_url(url))
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    return parsed


def pg_connect_args(url: URL, connect_timeout: float | None) -> dict[str, Any]:
    """connect_args of a PostgreSQL engine: connect timeout and TCP keepalives, unless the URL sets them."""
    args: dict[str, Any] = {k: v for k, v in PG_TCP_ARGS.items() if k not in url.query}
    if connect_timeout and "connect_timeout" not in url.query:
        args["connect_timeout"] = max(1, round(connect_timeout))
    return args


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
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        _setup_sqlite(engine)
        return engine
    connect_args = pg_connect_args(parsed, connect_timeout) if parsed.get_backend_name() == "postgresql" else {}
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
