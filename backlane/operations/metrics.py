"""Prometheus metrics: Dramatiq's middleware plus backlane's counters.

Dramatiq's Prometheus middleware already counts messages per queue and actor
in every worker process (multiprocess mode, files in one directory). On top of
that backlane counts item outcomes per pipeline and error class, their
durations, and dead letters. The process that serves them (with ``/health``) is
:mod:`backlane.operations.endpoint`, forked by the dramatiq CLI.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from backlane.settings import Settings

logger = logging.getLogger("backlane.metrics")

#: Histogram buckets for item durations, seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

_items: Any = None
_durations: Any = None
_dead_letters: Any = None
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
    global _items, _durations, _dead_letters
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
