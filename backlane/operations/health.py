"""Health: is the worker's world reachable, and is each pipeline keeping up?

Used by the worker's ``/health`` endpoint and by ``backlane status``. The broker
and the database are checked for real (a connection, a ``SELECT 1``); each
pipeline contributes its own rows through its ``health`` hook (catalog sections
report their freshness and breakers there).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from backlane.core.registry import Registry
from backlane.core.runtime import Runtime

#: Worst first: the overall status is the worst of its parts.
SEVERITY = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def worst(statuses: list[str]) -> str:
    return max(statuses, key=lambda s: SEVERITY.get(s, 2), default="healthy")


def check_broker(url: str) -> dict[str, Any]:
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 3
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)
    try:
        pika.BlockingConnection(params).close()
        return {"health": "healthy"}
    except Exception as exc:
        return {"health": "unhealthy", "error": f"RabbitMQ unreachable: {exc.__class__.__name__}"}
    finally:
        pika_logger.setLevel(level)


def check_database(runtime: Runtime) -> dict[str, Any]:
    try:
        with runtime.database.transaction() as session:
            session.execute(text("SELECT 1"))
        return {"health": "healthy"}
    except Exception as exc:
        return {"health": "unhealthy", "error": f"database unreachable: {exc.__class__.__name__}"}


def pipeline_health(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    report = {}
    for registered in registry:
        hook = registered.pipeline.health
        if hook is None:
            continue
        try:
            report[registered.name] = hook(registered.context())
        except Exception as exc:
            report[registered.name] = [{"name": registered.name, "health": "unhealthy", "error": str(exc)}]
    return report


def overall_health(registry: Registry, runtime: Runtime) -> dict[str, Any]:
    broker = check_broker(runtime.settings.broker.url.get_secret_value())
    database = check_database(runtime)
    pipelines = pipeline_health(registry) if database["health"] == "healthy" else {}
    statuses = [broker["health"], database["health"]] + [
        row.get("health", "healthy") for rows in pipelines.values() for row in rows
    ]
    return {"status": worst(statuses), "broker": broker, "database": database, "pipelines": pipelines}
