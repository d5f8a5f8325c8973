"""The worker's ``/health`` and ``/metrics`` endpoint, in the one process the dramatiq CLI forks.

* ``GET /metrics`` — Dramatiq's and backlane's counters (:mod:`backlane.operations.metrics`),
  in the Prometheus text format;
* ``GET /health`` — JSON: the broker and database reachable, and each
  pipeline's own health rows, with the worst of all as ``status``; HTTP 200
  while the worker can work (broker and database reachable), 503 when not.

The registered pipelines and the runtime come in as parameters: the application
entry point (:func:`backlane.app.serve_endpoint`) loads them.
"""

from __future__ import annotations

import errno
import json
import logging
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


class _Server(ThreadingHTTPServer):
    registry: Registry
    runtime: Runtime


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            try:
                status, body = health_report(self.server.registry, self.server.runtime)
            except Exception as exc:  # a health check must answer, not crash
                status, body = 503, {"status": "unhealthy", "error": f"{exc.__class__.__name__}: {exc}"}
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

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def serve(registry: Registry, runtime: Runtime) -> int:
    """Serve until interrupted (the body of the process the dramatiq CLI forks).

    A port already taken (another worker on this host) or an address that cannot be bound
    is one warning line naming the setting; the worker runs on without an endpoint."""
    settings = runtime.settings
    prepare_environment(settings)
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    try:
        server = _Server((host, port), _Handler)
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
        return 0
    server.registry, server.runtime = registry, runtime
    server.daemon_threads = True
    logger.info("health and metrics on http://%s:%d", settings.worker.metrics_host, settings.worker.metrics_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
