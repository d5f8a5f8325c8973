"""Health: is the worker's world reachable, and is each pipeline keeping up?

Used by the worker's ``/health`` endpoint and by ``backlane status``. The broker
and the database are checked for real (a connection; the database's schema
revision, so a reachable database that was never migrated says "not migrated",
not "unreachable"); each enabled pipeline contributes its own rows through its
``health`` hook (catalog sections report their freshness and breakers there).

The vocabulary: ``healthy``, ``degraded``, ``unhealthy``, ``disabled`` (a pipeline
or section switched off: expected to do nothing, so it makes nothing unhealthy)
and ``None`` (unknown: it could not be read; shown as ``?``, never as healthy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from backlane.core.health import SEVERITY, Health, HealthRow, unknown, worst
from backlane.core.registry import Registry
from backlane.core.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy import Engine

HEALTHY, DEGRADED, UNHEALTHY, DISABLED = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.DISABLED

__all__ = ["DEGRADED", "DISABLED", "HEALTHY", "SEVERITY", "UNHEALTHY", "worst"]


def _broker_parameters(url: str, timeout: float, heartbeat: int | None = None) -> list[Any]:
    from backlane.messaging.links import url_parameters

    params = url_parameters(url, heartbeat)
    for param in params:
        param.connection_attempts = 1
        param.socket_timeout = param.stack_timeout = timeout
    return params


def _broker_failure(exc: Exception, url: str) -> dict[str, Any]:
    from backlane.problems import EXIT_USAGE, broker_problem

    problem = broker_problem(exc, url)
    line = problem.line if problem else f"RabbitMQ: {type(exc).__name__}"
    state = "refused" if problem is not None and problem.status == EXIT_USAGE else "unreachable"
    return {"health": UNHEALTHY, "state": state, "error": line}


@contextmanager
def _quiet_pika() -> Iterator[None]:
    """pika logs a failed connect at ERROR; the check reports it in one line instead."""
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        pika_logger.setLevel(level)


def check_broker(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """RabbitMQ accepts a connection and a publish: ``{"health", "state"}`` (ok, blocked,
    unreachable or refused) plus ``error`` (one line) when not; ``blocked`` is RabbitMQ's reason
    while it blocks publishers (a memory or disk alarm: :mod:`backlane.messaging.blocking`)."""
    from backlane.messaging.blocked_probe import blocked_reason

    with _quiet_pika():
        try:
            reason = blocked_reason(url, timeout)
        except Exception as exc:
            return _broker_failure(exc, url)
        return _broker_ok(url, reason)


def _broker_ok(url: str, reason: str | None) -> dict[str, Any]:
    """RabbitMQ answered: healthy, or unhealthy while it blocks publishers (``reason`` not None)."""
    from backlane.messaging.blocking import blocked_line

    if reason is None:
        return {"health": HEALTHY, "state": "ok"}
    line = blocked_line(url, reason).replace("; nothing was sent", "")
    return {"health": UNHEALTHY, "state": "blocked", "error": line, "blocked": reason}


class BrokerProbe:
    """:func:`check_broker` over one kept connection, for a process that asks again and again
    (the worker's /health): a reused connection is proven alive by a channel opened and closed
    on it; a broken one, or one left idle near its heartbeat timeout, is replaced by a new one.

    So a flood of probes costs RabbitMQ one connection, not one each (thread-safe: one check at
    a time)."""

    def __init__(self, url: str, timeout: float = 3.0, *, heartbeat: int = 30) -> None:
        self.url, self.timeout, self.heartbeat = url, timeout, heartbeat
        #: Reopen rather than reuse after this long unused: RabbitMQ drops a client silent for two
        #: heartbeats, and nothing runs pika's heartbeats between checks.
        self.idle_reopen = heartbeat * 1.5
        self._connection: Any = None
        self._publisher: Any = None
        self._used_at = 0.0
        self._lock = threading.Lock()
        #: Connections opened so far (tests read it).
        self.connects = 0

    def check(self) -> dict[str, Any]:
        from backlane.messaging.blocked_probe import probe_blocked
        from backlane.messaging.blocking import BLOCKED_CLOSE_WAIT
        from backlane.messaging.publishing import BatchPublisher

        with self._lock, _quiet_pika():
            if self._publisher is not None and time.monotonic() - self._used_at < self.idle_reopen:
                try:  # confirmed publishes of nothing: prove the connection alive, and not blocked
                    return self._answer(probe_blocked(self._publisher))
                except Exception:
                    pass  # broken: a fresh connection says whether RabbitMQ is there
            self.close()
            try:
                self.connects += 1
                params = _broker_parameters(self.url, self.timeout, self.heartbeat)
                for param in params:  # closing a blocked connection waits this long at most
                    param.blocked_connection_timeout = BLOCKED_CLOSE_WAIT
                self._publisher = BatchPublisher(params, blocked_limit=0.0)
                self._connection = self._publisher.connection
                return self._answer(probe_blocked(self._publisher))
            except Exception as exc:
                self.close()
                return _broker_failure(exc, self.url)

    def _answer(self, blocked: str | None) -> dict[str, Any]:
        if blocked is None:
            self._used_at = time.monotonic()
        else:
            self.close()  # a blocked connection is of no use for the next check
        return _broker_ok(self.url, blocked)

    def queue_depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Ready messages in each of ``queues`` that exists (a passive declare each, on the kept
        connection); a queue not declared yet is left out. Empty when RabbitMQ cannot be reached."""
        if self.check()["health"] != HEALTHY:
            return {}
        depths: dict[str, int] = {}
        with self._lock, _quiet_pika():
            channel = None
            try:
                for queue in queues:
                    if channel is None or not channel.is_open:
                        channel = self._connection.channel()
                    try:
                        depths[queue] = channel.queue_declare(queue, passive=True).method.message_count
                    except Exception:  # 404: not declared yet (RabbitMQ closes the channel)
                        channel = None
                if channel is not None and channel.is_open:
                    channel.close()
            except Exception:  # the connection broke half-way: the next scrape reconnects
                self.close()
        return depths

    def close(self) -> None:
        connection, self._connection, self._publisher = self._connection, None, None
        if connection is not None:
            with suppress(Exception):
                connection.close()


def check_database(runtime: Runtime, timeout: float | None = None, *, engine: Engine | None = None) -> dict[str, Any]:
    """The database reachable and migrated: ``{"health", "state"}`` plus ``error`` when not.

    ``state`` is ok, not migrated (no SQLite file — none is created —, no schema, or an older
    revision), unreachable or refused. ``engine``: ask through this pooled engine (PostgreSQL)
    instead of opening a connection of its own."""
    from backlane.db.schema import BEHIND, MISSING, schema_state

    found = schema_state(
        runtime.database_url, connect_timeout=timeout or runtime.settings.database.connect_timeout, engine=engine
    )
    if found.ok:
        return {"health": HEALTHY, "state": found.state, "revision": found.revision}
    state = "not migrated" if found.state in (MISSING, BEHIND) else found.state
    assert found.problem is not None
    return {"health": UNHEALTHY, "state": state, "error": found.problem.line}


def pipeline_rows(registry: Registry, runtime: Runtime | None = None) -> dict[str, list[HealthRow]]:
    """Each pipeline's health rows: ``disabled`` for one switched off, its hook's rows otherwise
    (one row of unknown health naming the error when the hook fails), with its pauses (given
    ``runtime``, read from the database now)."""
    state = pauses_now(runtime)
    report: dict[str, list[HealthRow]] = {}
    for registered in registry:
        ctx = registered.context()
        if not ctx.config.enabled:
            report[registered.name] = [HealthRow(registered.name, Health.DISABLED)]
            continue
        hook = registered.pipeline.health
        rows: list[HealthRow] = []
        if hook is not None:
            try:
                rows = list(hook(ctx))
            except Exception as exc:
                rows = [unknown(registered.name, f"{exc.__class__.__name__}: {exc}"[:300])]
        rows = with_pauses(registered.name, rows, state, runtime)
        if rows:
            report[registered.name] = rows
    return report


def pauses_now(runtime: Runtime | None) -> Any:
    if runtime is None:
        return None
    from backlane.core.controls import read_state

    try:
        return read_state(runtime.database)
    except Exception:  # a schema without the controls (a release before): nothing is paused
        return None


def with_pauses(name: str, rows: list[HealthRow], state: Any, runtime: Runtime | None) -> list[HealthRow]:
    """``rows`` as the pauses make them: a paused pipeline is one ``paused`` row (its parts
    do nothing, so their staleness says nothing), a paused part's row is ``paused``, a paused
    inbox a row of its own; a pause older than ``controls.pause_warn_hours`` is ``degraded``,
    so a pause forgotten after the 3 a.m. incident does not stay silent."""
    if state is None or runtime is None:
        return rows
    from datetime import timedelta

    from backlane.core.clock import as_utc
    from backlane.db.models.controls import INBOX_PART, WHOLE_PIPELINE

    now = runtime.clock.now()
    warn = timedelta(hours=runtime.settings.controls.pause_warn_hours)

    def row(row_name: str, pause: Any, base: HealthRow | None = None) -> HealthRow:
        age = max(now - as_utc(pause.paused_at), timedelta(0))
        old = age > warn
        summary = pause.summary(age, old)
        paused = {"by": pause.paused_by, "at": as_utc(pause.paused_at).isoformat(), "reason": pause.reason}
        return HealthRow(
            row_name,
            Health.DEGRADED if old else Health.PAUSED,
            summary=summary,
            columns={**(base.columns if base else {}), "paused": summary},
            details={**(base.details if base else {}), "paused": paused},
            trigger_target=base.trigger_target if base else None,
        )

    whole = state.paused(name, WHOLE_PIPELINE)
    if whole is not None:
        return [row(name, whole)]
    shown = [row(r.name, state.paused(name, r.name), r) if state.paused(name, r.name) else r for r in rows]
    inbox = state.paused(name, INBOX_PART)
    if inbox is not None:
        shown.append(row("inbox", inbox))
    return shown


def overall_health(
    registry: Registry,
    runtime: Runtime,
    *,
    broker_check: Callable[[], dict[str, Any]] | None = None,
    database_check: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole report; ``broker_check`` and ``database_check`` replace the one-off checks (the
    endpoint passes ones that reuse their connections)."""
    settings = runtime.settings
    broker = broker_check() if broker_check else check_broker(settings.broker.url.get_secret_value())
    database = database_check() if database_check else check_database(runtime)
    pipelines = pipeline_rows(registry, runtime) if database["health"] == HEALTHY else {}
    parts: list[str | None] = [broker["health"], database["health"]]
    parts += [row.health for rows in pipelines.values() for row in rows]
    shown = {name: [row.as_json() for row in rows] for name, rows in pipelines.items()}
    return {"status": worst(parts), "broker": broker, "database": database, "pipelines": shown}
