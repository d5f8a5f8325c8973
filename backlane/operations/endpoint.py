"""The worker's ``/health`` and ``/metrics`` endpoint, in the one process the dramatiq CLI forks.

* ``GET /metrics`` — Dramatiq's and backlane's counters (:mod:`backlane.operations.metrics`),
  in the Prometheus text format;
* ``GET /health`` — JSON: the broker and database reachable, and each
  pipeline's own health rows, with the worst of all as ``status``; HTTP 200
  while the worker can work (broker and database reachable), 503 when not.

The registered pipelines and the runtime come in as parameters: the application
entry point (:func:`backlane.app.serve_endpoint`) loads them.

A probe is the one client that asks most and can do most harm: every health computation
opens a broker connection and reads the database, so a flood of probes (or of anyone who
can reach the port) would exhaust both. So the report is computed by one request at a
time and reused for ``worker.health_cache_seconds`` (:class:`HealthCache`); at most
``worker.endpoint_threads`` requests are served at once, one more is answered 503 at once
without a thread; and a client that sends nothing for ``worker.endpoint_timeout`` seconds
is disconnected.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backlane.core.registry import Registry
from backlane.core.runtime import Runtime
from backlane.operations.health import overall_health
from backlane.operations.metrics import metrics_dir, prepare_environment

logger = logging.getLogger("backlane.metrics")


def health_report(registry: Registry, runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of the health endpoint."""
    report = overall_health(registry, runtime)
    # The status code answers "can this worker work?" (what a liveness/readiness probe asks):
    # a stale catalog section is worth reporting, not worth restarting the worker over.
    can_work = report["broker"]["health"] == "healthy" and report["database"]["health"] == "healthy"
    return (200 if can_work else 503), report


Report = tuple[int, dict[str, Any]]


class HealthCache:
    """The last health report, recomputed by one caller at a time once it is ``ttl`` old.

    While a computation is under way, callers get the previous report if there is one, and
    wait for the new one only when there is none yet."""

    def __init__(self, compute: Callable[[], Report], ttl: float, clock: Callable[[], float] = time.monotonic):
        self._compute, self._ttl, self._clock = compute, ttl, clock
        self._lock = threading.Lock()
        self._last: Report | None = None
        self._at = float("-inf")
        self.computations = 0

    def get(self) -> Report:
        last = self._last
        if last is not None and self._clock() - self._at < self._ttl:
            return last
        if last is not None and not self._lock.acquire(blocking=False):
            return last  # another request is computing it
        if last is None:
            self._lock.acquire()
        try:
            if self._last is not None and self._clock() - self._at < self._ttl:
                return self._last  # computed while this one waited
            try:
                report = self._compute()
            except Exception as exc:  # a health check must answer, not crash
                report = 503, {"status": "unhealthy", "error": f"{exc.__class__.__name__}"[:300]}
            self.computations += 1
            self._last, self._at = report, self._clock()
            return report
        finally:
            self._lock.release()


#: Answer to a request beyond the bound: no thread, no parsing.
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
)


class _Server(ThreadingHTTPServer):
    registry: Registry
    runtime: Runtime
    health: HealthCache
    slots: threading.BoundedSemaphore
    daemon_threads = True
    request_queue_size = 64

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    #: Seconds a client may stay silent (set from worker.endpoint_timeout in serve()).
    timeout: float | None = 10.0

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            status, body = self.server.health.get()
            self._send(status, "application/json", json.dumps(body, default=str).encode())
        elif self.path.startswith("/metrics") or self.path == "/":
            import prometheus_client as prom
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            self._send(200, prom.CONTENT_TYPE_LATEST, prom.generate_latest(registry))
        else:
            self._send(404, "text/plain", b"try /health or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # a silent or vanished client: let the thread go

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


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
    return 0


def build_server(registry: Registry, runtime: Runtime) -> _Server | None:
    """The endpoint's server, bound to ``worker.metrics_host``/``metrics_port``; None (said in
    one warning line) when the address cannot be bound."""
    settings = runtime.settings
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    handler = type("Handler", (_Handler,), {"timeout": settings.worker.endpoint_timeout})
    try:
        server = _Server((host, port), handler)
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
    server.registry, server.runtime = registry, runtime
    server.health = HealthCache(lambda: health_report(registry, runtime), settings.worker.health_cache_seconds)
    server.slots = threading.BoundedSemaphore(settings.worker.endpoint_threads)
    return server
