"""The worker's ``/health`` and ``/metrics`` endpoint, in the one process the dramatiq CLI forks.

* ``GET /metrics`` — Dramatiq's and backlane's counters (:mod:`backlane.operations.metrics`),
  in the Prometheus text format, and the state gauges read when scraped (breakers, health
  rows, queue depths: :meth:`Endpoint._state`);
* ``GET /health`` — JSON: the broker and database reachable, and each
  pipeline's own health rows, with the worst of all as ``status``; HTTP 200
  while the worker can work (broker and database reachable), 503 when not.

The registered pipelines and the runtime come in as parameters: the application
entry point (:func:`backlane.app.serve_endpoint`) loads them.

A probe is the one client that asks most and can do most harm: a health computation
checks the broker and reads the database, so a flood of probes (or of anyone who can
reach the port) must not cost one each. So both answers are computed one at a time and
reused for a few seconds (:class:`Endpoint`: ``worker.health_cache_seconds``,
``worker.metrics_cache_seconds``), the broker check keeps one AMQP connection and the
database check uses the process's one pooled engine; and the server
(:mod:`backlane.operations.bounded_http`) reads requests on one I/O thread with a deadline
(``worker.endpoint_timeout``) and a size limit, answers them on ``worker.endpoint_threads``
threads, and answers ``503`` ``{"status": "busy"}`` at once beyond its queue.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from typing import Any

from backlane.core.registry import Registry
from backlane.core.runtime import Runtime
from backlane.db.schema import sqlite_path
from backlane.operations.bounded_http import BoundedHTTPServer, Limits, ReadRequestHandler
from backlane.operations.health import HEALTHY, BrokerProbe, check_database, overall_health, pipeline_rows
from backlane.operations.metrics import metrics_dir, prepare_environment, state_metrics
from backlane.operations.single_flight import SingleFlight
from backlane.settings import Settings

logger = logging.getLogger("backlane.metrics")

#: Seconds RabbitMQ gets to accept the health check's connection.
BROKER_TIMEOUT = 3.0

#: Seconds a /metrics answer waits for the state gauges (read from the database and RabbitMQ;
#: tens of milliseconds when they answer) before it is sent with the last reading, or without
#: them: the counters must answer within Prometheus' scrape timeout (10 s by default) however
#: slow the database is, or the worker would look down.
STATE_WAIT = 1.0

#: Seconds the last state gauges are still served while a newer reading is slow; then left out.
STATE_STALE = 30.0


def health_report(
    registry: Registry,
    runtime: Runtime,
    *,
    broker_check: Callable[[], dict[str, Any]] | None = None,
    database_check: Callable[[], dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of the health endpoint."""
    report = overall_health(registry, runtime, broker_check=broker_check, database_check=database_check)
    # The status code answers "can this worker work?" (what a liveness/readiness probe asks):
    # a stale catalog section is worth reporting, not worth restarting the worker over.
    can_work = report["broker"]["health"] == "healthy" and report["database"]["health"] == "healthy"
    return (200 if can_work else 503), report


#: (status, content type, body): an answer computed once and sent to many.
Answer = tuple[int, str, bytes]


class Endpoint:
    """What the endpoint answers, cheaply: one computation of each answer at a time, reused for
    its cache period; requests beyond the one computing get the last answer while it is recent,
    or wait for the one in flight."""

    def __init__(self, registry: Registry, runtime: Runtime) -> None:
        self.registry, self.runtime = registry, runtime
        settings = runtime.settings
        self.broker = BrokerProbe(
            settings.broker.url.get_secret_value(), BROKER_TIMEOUT, heartbeat=settings.broker.heartbeat_seconds
        )
        #: Long enough for both checks to time out and say so (a reachable world answers in ms).
        wait = BROKER_TIMEOUT + settings.database.connect_timeout + 1.0
        self.health = SingleFlight(
            self._compute_health, ttl=settings.worker.health_cache_seconds, stale=wait, wait=wait, overdue=_overdue
        )
        self.metrics = SingleFlight(
            self._compute_metrics, ttl=settings.worker.metrics_cache_seconds, stale=wait, wait=wait, overdue=_overdue
        )
        self.state = SingleFlight(
            self._state, ttl=settings.worker.metrics_cache_seconds, stale=STATE_STALE, wait=STATE_WAIT, overdue=bytes
        )

    def _database_check(self) -> dict[str, Any]:
        url = self.runtime.database_url
        engine = None
        if sqlite_path(url) is None and not url.startswith("sqlite"):
            try:
                engine = self.runtime.database.engine  # PostgreSQL: the pooled engine, reconnecting
            except Exception:  # a URL no engine accepts: the one-off check says why
                engine = None
        return check_database(self.runtime, engine=engine)

    def _compute_health(self) -> Answer:
        try:
            status, body = health_report(
                self.registry, self.runtime, broker_check=self.broker.check, database_check=self._database_check
            )
        except Exception as exc:  # a health check must answer, not crash
            status, body = 503, {"status": "unhealthy", "error": f"health check failed: {exc.__class__.__name__}"}
        return status, "application/json", json.dumps(body, default=str).encode()

    def close(self) -> None:
        self.broker.close()

    def _compute_metrics(self) -> Answer:
        answer = _compute_counters()
        if answer[0] != 200:
            return answer
        return answer[0], answer[1], answer[2] + self.state.get_within(STATE_WAIT, b"")

    def _state(self) -> bytes:
        """The state gauges: breakers and health rows from the database (when it answers), each
        queue's ready messages from RabbitMQ (when it answers). What cannot be read is left out
        (the counters are still served), and said in one warning line."""
        breakers: list[dict[str, Any]] = []
        rows: dict[str, list[Any]] = {}
        try:
            if self._database_check()["health"] == HEALTHY:
                breakers = _breakers(self.runtime)
                rows = pipeline_rows(self.registry, self.runtime)
        except Exception as exc:
            logger.warning("/metrics: breakers and health rows unreadable: %s", exc.__class__.__name__)
        try:
            depths = self.broker.queue_depths(_queues(self.registry, self.runtime))
        except Exception as exc:
            logger.warning("/metrics: queue depths unreadable: %s", exc.__class__.__name__)
            depths = {}
        return state_metrics(breakers, rows, depths)


def _breakers(runtime: Runtime) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from backlane.db.models import CircuitBreakerRow
    from backlane.resilience.breaker import breaker_row_state

    now = runtime.clock.now()
    with runtime.database.transaction() as session:
        return [breaker_row_state(row, now) for row in session.scalars(select(CircuitBreakerRow))]


def _queues(registry: Registry, runtime: Runtime) -> list[str]:
    """Every queue of the broker's actors and the pipelines, each with its delay and dead-letter queue."""
    from dramatiq.common import dq_name, xq_name

    names = {actor.queue_name for actor in runtime.broker.actors.values()}
    names |= {registered.pipeline.queue_name for registered in registry}
    return [name for queue in sorted(names) for name in (queue, dq_name(queue), xq_name(queue))]


def _compute_counters() -> Answer:
    import prometheus_client as prom
    from prometheus_client import multiprocess

    try:
        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return 200, prom.CONTENT_TYPE_LATEST, prom.generate_latest(registry)
    except Exception as exc:
        return 503, "text/plain", f"metrics unreadable: {exc.__class__.__name__}\n".encode()


def _overdue() -> Answer:
    body = {"status": "unhealthy", "error": "the check is still running: RabbitMQ or the database is slow to answer"}
    return 503, "application/json", json.dumps(body).encode()


class _Handler(ReadRequestHandler):
    server: _Server  # type: ignore[assignment]

    def do_GET(self) -> None:
        endpoint = self.server.endpoint
        if self.path.startswith("/health"):
            self._send(*endpoint.health.get())
        elif self.path.startswith("/metrics") or self.path == "/":
            self._send(*endpoint.metrics.get())
        else:
            self._send(404, "text/plain", b"try /health or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


class _Server(BoundedHTTPServer):
    endpoint: Endpoint

    @property
    def health(self) -> SingleFlight[Answer]:
        return self.endpoint.health


def limits(settings: Settings) -> Limits:
    worker = settings.worker
    return Limits(
        threads=worker.endpoint_threads,
        queue=worker.endpoint_queue,
        max_connections=worker.endpoint_max_connections,
        request_timeout=worker.endpoint_timeout,
        max_request_bytes=worker.endpoint_max_request_bytes,
    )


def serve(registry: Registry, runtime: Runtime) -> int:
    """Serve until interrupted (the body of the process the dramatiq CLI forks).

    A port already taken (another worker on this host) or an address that cannot be bound
    is one warning line naming the setting; the worker runs on without an endpoint."""
    settings = runtime.settings
    prepare_environment(settings)
    server = build_server(registry, runtime)
    if server is None:
        return 0
    logger.info("health and metrics on http://%s:%d", settings.worker.metrics_host, settings.worker.metrics_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.endpoint.close()
    return 0


def build_server(registry: Registry, runtime: Runtime) -> _Server | None:
    """The endpoint's server, bound to ``worker.metrics_host``/``metrics_port``; None (said in
    one warning line) when the address cannot be bound."""
    settings = runtime.settings
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    try:
        server = _Server((host, port), _Handler, limits(settings))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            logger.warning(
                "/health and /metrics not served: %s:%d is taken, by another worker on this host? "
                "This worker runs on without them; give each worker its own BACKLANE_WORKER__METRICS_PORT "
                "(its counters are in %s, which a backlane endpoint on that port serves too)",
                host,
                port,
                metrics_dir(settings),
            )
        else:
            logger.warning(
                "/health and /metrics not served: cannot listen on %s:%d (%s); fix BACKLANE_WORKER__METRICS_HOST "
                "or BACKLANE_WORKER__METRICS_PORT. This worker runs on without them",
                host,
                port,
                exc.strerror or exc,
            )
        return None
    server.endpoint = Endpoint(registry, runtime)
    return server
