"""Process-wide wiring: settings, broker, database and clock, built once.

Importing :mod:`actors` calls :func:`setup_broker`, so ``dramatiq actors
scheduler`` and ``periodiq scheduler`` get the configured broker. Tests build
their own pieces and install them with :func:`install`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import dramatiq
from dramatiq.broker import Broker
from dramatiq.middleware import (
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from backlane import log_limits
from backlane.broker import BacklaneBroker
from backlane.clock import Clock, default_clock
from backlane.db.engine import Database
from backlane.metrics import build_metrics_middleware
from backlane.settings import Settings, get_settings

#: A tick message older than this is skipped: the next tick comes soon anyway, seconds.
PERIODIQ_SKIP_DELAY = 30


def _retry_when(max_retries: int):  # type: ignore[no-untyped-def]
    """backlane's per-item actors end only in success, dramatiq.Retry (delay and count decided
    by backlane.processing) or FinalFailure (in ``throws``), so Dramatiq never gives up on an
    item by its own count; anything else escaping an actor is retried up to max_retries.

    Dramatiq's AgeLimit is left out on purpose: it dead-letters old messages with their rows
    still in flight; backlane.processing applies ``retries.max_age_ms`` without losing the item."""

    def retry_when(retries: int, exception: BaseException) -> bool:
        return isinstance(exception, dramatiq.Retry) or retries < max_retries

    return retry_when


def build_middleware(settings: Settings) -> list[Middleware]:
    retry = settings.retries
    middleware: list[Middleware] = [
        TimeLimit(time_limit=retry.time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=retry.max_retries,
            min_backoff=retry.min_backoff_ms,
            max_backoff=retry.max_backoff_ms,
            retry_when=_retry_when(retry.max_retries),
        ),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY),
    ]
    if settings.worker.metrics_port:
        middleware.insert(0, build_metrics_middleware(settings))
    return middleware


def build_broker(settings: Settings) -> BacklaneBroker:
    return BacklaneBroker(
        url=settings.broker.url.get_secret_value(),
        middleware=build_middleware(settings),
        queue_type=settings.broker.queue_type,
        dead_letter_ttl_ms=settings.broker.dead_letter_ttl_ms,
        reconnect_timeout=settings.broker.reconnect_timeout,
    )


@dataclass
class Runtime:
    settings: Settings
    broker: Broker
    clock: Clock
    _database: Database | None = None

    @property
    def database(self) -> Database:
        """Created on first use, so importing actors never opens a connection."""
        if self._database is None:
            db = self.settings.database
            self._database = Database(db.url.get_secret_value(), pool_size=db.pool_size, echo=db.echo)
        return self._database


def _apply_worker_settings(settings: Settings) -> None:
    """Dramatiq reads its prefetch from the environment when it is imported, before our
    settings exist; the worker reads the module value when it starts, after importing us."""
    if settings.broker.prefetch:
        import dramatiq.worker

        dramatiq.worker.QUEUE_PREFETCH = settings.broker.prefetch


_lock = threading.Lock()
_runtime: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _runtime
    with _lock:
        _runtime = runtime
        dramatiq.set_broker(runtime.broker)
    return runtime


def get_runtime() -> Runtime:
    """The installed runtime, built from the environment on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            logging.getLogger("backlane").setLevel(settings.log_level)
            log_limits.install()
            _apply_worker_settings(settings)
            _runtime = Runtime(settings=settings, broker=build_broker(settings), clock=default_clock())
            dramatiq.set_broker(_runtime.broker)
        return _runtime


def setup_broker() -> Broker:
    return get_runtime().broker
