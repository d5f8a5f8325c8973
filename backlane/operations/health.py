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
from typing import Any

from backlane.core.registry import Registry
from backlane.core.runtime import Runtime

HEALTHY, DEGRADED, UNHEALTHY, DISABLED = "healthy", "degraded", "unhealthy", "disabled"
#: Worst last: the overall status is the worst of its parts.
SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


def worst(statuses: list[str | None]) -> str | None:
    """The worst of ``statuses``: unhealthy beats unknown (None) beats degraded beats healthy;
    disabled parts do not count, and nothing at all is healthy."""
    counted = [s for s in statuses if s != DISABLED]
    if UNHEALTHY in counted or any(s is not None and s not in SEVERITY for s in counted):
        return UNHEALTHY
    if None in counted:
        return None
    return max(counted, key=lambda s: SEVERITY[s or HEALTHY], default=HEALTHY)


def check_broker(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """RabbitMQ accepts a connection: ``{"health", "state"}`` (ok, unreachable or refused) plus
    ``error`` (one line) when not."""
    import pika

    from backlane.problems import EXIT_USAGE, broker_problem

    params = [pika.URLParameters(u) for u in url.split(";") if u.strip()]
    for param in params:
        param.connection_attempts = 1
        param.socket_timeout = param.stack_timeout = timeout
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)
    try:
        pika.BlockingConnection(params).close()
        return {"health": HEALTHY, "state": "ok"}
    except Exception as exc:
        problem = broker_problem(exc, url)
        line = problem.line if problem else f"RabbitMQ: {type(exc).__name__}"
        state = "refused" if problem is not None and problem.status == EXIT_USAGE else "unreachable"
        return {"health": UNHEALTHY, "state": state, "error": line}
    finally:
        pika_logger.setLevel(level)


def check_database(runtime: Runtime, timeout: float | None = None) -> dict[str, Any]:
    """The database reachable and migrated: ``{"health", "state"}`` plus ``error`` when not.

    ``state`` is ok, not migrated (no SQLite file — none is created —, no schema, or an older
    revision), unreachable or refused."""
    from backlane.db.schema import BEHIND, MISSING, schema_state

    found = schema_state(runtime.database_url, connect_timeout=timeout or runtime.settings.database.connect_timeout)
    if found.ok:
        return {"health": HEALTHY, "state": found.state, "revision": found.revision}
    state = "not migrated" if found.state in (MISSING, BEHIND) else found.state
    assert found.problem is not None
    return {"health": UNHEALTHY, "state": state, "error": found.problem.line}


def pipeline_rows(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    """Each pipeline's health rows: ``disabled`` for one switched off, its hook's rows otherwise
    (one row of unknown health naming the error when the hook fails)."""
    report: dict[str, list[dict[str, Any]]] = {}
    for registered in registry:
        ctx = registered.context()
        if not ctx.config.enabled:
            report[registered.name] = [{"name": registered.name, "health": DISABLED}]
            continue
        hook = registered.pipeline.health
        if hook is None:
            continue
        try:
            report[registered.name] = hook(ctx)
        except Exception as exc:
            report[registered.name] = [
                {"name": registered.name, "health": None, "error": f"{exc.__class__.__name__}: {exc}"[:300]}
            ]
    return report


def overall_health(registry: Registry, runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    broker = check_broker(settings.broker.url.get_secret_value())
    database = check_database(runtime)
    pipelines = pipeline_rows(registry) if database["health"] == HEALTHY else {}
    parts: list[str | None] = [broker["health"], database["health"]]
    parts += [row.get("health", HEALTHY) for rows in pipelines.values() for row in rows]
    return {"status": worst(parts), "broker": broker, "database": database, "pipelines": pipelines}
