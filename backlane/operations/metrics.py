"""Prometheus metrics: Dramatiq's middleware plus backlane's counters and state gauges.

Dramatiq's Prometheus middleware already counts messages per queue and actor
in every worker process (multiprocess mode, files in one directory). On top of
that backlane counts item outcomes per pipeline and error class, their
durations, and dead letters, and stamps each pipeline's last discover tick.
The process that serves them (with ``/health``) is
:mod:`backlane.operations.endpoint`, forked by the dramatiq CLI; it adds, read when
scraped (:func:`state_metrics`), what lives outside the worker processes: each
circuit breaker's state (in the database), each pipeline's health rows and each
queue's ready messages (in RabbitMQ). The alert rules and the Grafana dashboard over
all of these are in the repository's ``monitoring/`` folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from backlane.settings import Settings

logger = logging.getLogger("backlane.metrics")

#: Histogram buckets for item durations, seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

_items: Any = None
_durations: Any = None
_dead_letters: Any = None
_ticks: Any = None
#: The labelled children of _items and _durations, by their labels: one lookup per item, not two.
_outcome_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}


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


def build_metrics_middleware(settings: Settings, serve: Callable[[], int]) -> Any:
    """Dramatiq's Prometheus middleware, with backlane's counters and ``serve`` as the
    process the dramatiq CLI forks to expose them (instead of Dramatiq's own server)."""
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
    global _items, _durations, _dead_letters, _ticks
    import prometheus_client as prom

    _outcome_children.clear()

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
    _ticks = prom.Gauge(
        "backlane_discover_last_tick_timestamp_seconds",
        "When a pipeline's discover tick last completed, Unix time.",
        ["pipeline"],
        multiprocess_mode="max",  # the latest of every worker process's, dead ones' included
        registry=registry,
    )


def observe_outcome(pipeline: str, outcome: str, error_class: str | None, duration_s: float) -> None:
    if _items is None:
        return
    key = (pipeline, outcome, error_class or "")
    children = _outcome_children.get(key)
    if children is None:
        children = _outcome_children[key] = (_items.labels(*key), _durations.labels(pipeline, outcome))
    children[0].inc()
    children[1].observe(duration_s)


def observe_dead_letter(queue: str, error_class: str) -> None:
    if _dead_letters is not None:
        _dead_letters.labels(queue, error_class).inc()


def observe_tick(pipeline: str) -> None:
    """A discover tick of ``pipeline`` completed (once per tick, not per item)."""
    if _ticks is not None:
        _ticks.labels(pipeline).set(time.time())


#: The values of ``backlane_health_row``'s ``health`` label: one series each per row, 1 for the
#: row's health now and 0 for the others (``unknown``: the row's health could not be read).
HEALTH_STATES = ("healthy", "degraded", "unhealthy", "disabled", "paused", "unknown")


def state_metrics(
    breakers: Iterable[Mapping[str, Any]],
    health_rows: Mapping[str, Iterable[Any]],
    queue_depths: Mapping[str, int],
) -> bytes:
    """The state gauges, in the Prometheus text format, from what the endpoint read when scraped:

    * ``breakers``: each breaker as :func:`backlane.resilience.breaker.breaker_row_state` gives it;
    * ``health_rows``: each pipeline's :class:`~backlane.core.health.HealthRow` values;
    * ``queue_depths``: ready messages per queue name.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    is_open = GaugeMetricFamily(
        "backlane_breaker_open",
        "1 while a circuit breaker is open or half-open (not yet closed by a successful trial call), else 0.",
        labels=["breaker"],
    )
    failures = GaugeMetricFamily(
        "backlane_breaker_consecutive_failures",
        "Failures in a row a circuit breaker has counted since its last success.",
        labels=["breaker"],
    )
    for breaker in breakers:
        is_open.add_metric([breaker["name"]], 0 if breaker["state"] == "closed" else 1)
        failures.add_metric([breaker["name"]], breaker["consecutive_failures"])
    health = GaugeMetricFamily(
        "backlane_health_row",
        "1 for the health a pipeline's health row (a section, an upstream API) reports now, 0 for the others.",
        labels=["pipeline", "row", "health"],
    )
    for pipeline, rows in health_rows.items():
        for row in rows:
            now = str(row.health) if row.health is not None else "unknown"
            for state in HEALTH_STATES:
                health.add_metric([pipeline, row.name, state], 1 if state == now else 0)
    ready = GaugeMetricFamily(
        "backlane_queue_messages_ready",
        "Messages ready in a queue (delay .DQ and dead-letter .XQ queues included), as RabbitMQ counts them.",
        labels=["queue"],
    )
    for queue, count in sorted(queue_depths.items()):
        ready.add_metric([queue], count)

    class _State:
        def collect(self) -> list[Any]:
            return [is_open, failures, health, ready]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_State())  # type: ignore[arg-type]
    return generate_latest(registry)
