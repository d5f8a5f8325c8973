"""Prometheus metrics and the health endpoint, served by the worker.

Dramatiq's Prometheus middleware already counts messages per queue and actor
in every worker process (multiprocess mode, files in one directory). On top of
that backlane counts item outcomes per pipeline and error class, their
durations, and dead letters, and serves, from one process forked by the
dramatiq CLI:

* ``GET /metrics`` — everything above, in the Prometheus text format;
* ``GET /health`` — JSON: the broker and database reachable, and each
  pipeline's own health rows, with the worst of all as ``status``; HTTP 200
  while the worker can work (broker and database reachable), 503 when not.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backlane.settings import Settings, get_settings

logger = logging.getLogger("backlane.operations.metrics")

#: Histogram buckets for item durations, seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

_items: Any = None
_durations: Any = None
_dead_letters: Any = None


def metrics_dir(settings: Settings) -> str:
    return settings.worker.metrics_dir or os.path.join(
        tempfile.gettempdir(), f"backlane-metrics-{settings.worker.metrics_port}"
    )


def prepare_environment(settings: Settings) -> None:
    """Point Dramatiq's middleware and prometheus_client at our directory; call before importing them."""
    directory = metrics_dir(settings)
    os.makedirs(directory, exist_ok=True)
    os.environ["dramatiq_prom_db"] = directory  # noqa: SIM112 - the names Dramatiq reads
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.environ["prometheus_multiproc_dir"] = directory  # noqa: SIM112 - older prometheus_client


def build_metrics_middleware(settings: Settings) -> Any:
    """Dramatiq's Prometheus middleware, with backlane's server and counters added."""
    prepare_environment(settings)
    from dramatiq.middleware.prometheus import Prometheus

    class BacklaneMetrics(Prometheus):  # type: ignore[misc]
        @property
        def forks(self) -> list[Any]:
            return [serve]

        def after_process_boot(self, broker: Any) -> None:
            super().after_process_boot(broker)
            _create_counters()

    return BacklaneMetrics()


def _create_counters() -> None:
    global _items, _durations, _dead_letters
    import prometheus_client as prom

    registry = prom.CollectorRegistry()  # values go to the multiprocess files, not to this registry
    _items = prom.Counter(
        "backlane_items_total",
        "Per-item attempts by outcome (succeeded, retry, waiting, failed) and error class.",
        ["pipeline", "outcome", "error_class"],
        registry=registry,
    )
    _durations = prom.Histogram(
        "backlane_item_duration_seconds",
        "Time spent on one attempt of one item.",
        ["pipeline", "outcome"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    _dead_letters = prom.Counter(
        "backlane_dead_letters_total",
        "Messages moved to a dead-letter queue, by queue and error class.",
        ["queue", "error_class"],
        registry=registry,
    )


def observe_outcome(pipeline: str, outcome: str, error_class: str | None, duration_s: float) -> None:
    if _items is not None:
        _items.labels(pipeline, outcome, error_class or "").inc()
        _durations.labels(pipeline, outcome).observe(duration_s)


def observe_dead_letter(queue: str, error_class: str) -> None:
    if _dead_letters is not None:
        _dead_letters.labels(queue, error_class).inc()


def health_report() -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of the health endpoint."""
    from backlane.operations.health import overall_health

    report = overall_health()
    # The status code answers "can this worker work?" (what a liveness/readiness probe asks):
    # a stale catalog section is worth reporting, not worth restarting the worker over.
    can_work = report["broker"]["health"] == "healthy" and report["database"]["health"] == "healthy"
    return (200 if can_work else 503), report


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            try:
                status, body = health_report()
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


def serve() -> int:
    """Entry point of the process the dramatiq CLI forks for us."""
    settings = get_settings()
    prepare_environment(settings)
    server = ThreadingHTTPServer((settings.worker.metrics_host, settings.worker.metrics_port), _Handler)
    server.daemon_threads = True
    logger.info("health and metrics on http://%s:%d", settings.worker.metrics_host, settings.worker.metrics_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
