"""The application entry point: the one place that builds the broker and loads the pipelines.

The core never imports the application. The application is a module (or several)
whose import registers the pipelines, exactly what ``dramatiq actors scheduler``
names on its command line: ``actors`` calls :func:`setup` to build and install the
runtime, then registers one pipeline per module; ``scheduler`` adds the discover
actors. Whoever needs the registered pipelines (the CLI, ``backlane status``, the
worker's ``/health`` endpoint) calls :func:`load_app`, which imports the modules
named by ``--app`` / ``BACKLANE_APP`` (default: ``scheduler``, which imports
``actors``) and returns the registry and runtime.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import dramatiq
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

from backlane.core import log_limits
from backlane.core.clock import default_clock
from backlane.core.registry import REGISTRY, Registry
from backlane.core.runtime import Runtime, get_runtime, install, installed_runtime
from backlane.messaging.broker import BacklaneBroker
from backlane.operations import endpoint
from backlane.operations.metrics import build_metrics_middleware
from backlane.settings import Settings, get_settings

#: A tick message older than this is skipped: the next tick comes soon anyway, seconds.
PERIODIQ_SKIP_DELAY = 30


@dataclass(frozen=True)
class App:
    """The loaded application: its registered pipelines and the runtime they run on."""

    registry: Registry
    runtime: Runtime


def _retry_when(max_retries: int):  # type: ignore[no-untyped-def]
    """backlane's per-item actors end only in success, dramatiq.Retry (delay and count decided
    by backlane.core.processing) or FinalFailure (in ``throws``), so Dramatiq never gives up on an
    item by its own count; anything else escaping an actor is retried up to max_retries.

    Dramatiq's AgeLimit is left out on purpose: it dead-letters old messages with their rows
    still in flight; backlane.core.processing applies ``retries.max_age_ms`` without losing the item."""

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
        middleware.insert(0, build_metrics_middleware(settings, serve_endpoint))
    return middleware


def build_broker(settings: Settings) -> BacklaneBroker:
    return BacklaneBroker(
        url=settings.broker.url.get_secret_value(),
        middleware=build_middleware(settings),
        queue_type=settings.broker.queue_type,
        dead_letter_ttl_ms=settings.broker.dead_letter_ttl_ms,
        reconnect_timeout=settings.broker.reconnect_timeout,
    )


def _apply_worker_settings(settings: Settings) -> None:
    """Dramatiq reads its prefetch from the environment when it is imported, before our
    settings exist; the worker reads the module value when it starts, after importing us."""
    if settings.broker.prefetch:
        import dramatiq.worker

        dramatiq.worker.QUEUE_PREFETCH = settings.broker.prefetch


def setup() -> BacklaneBroker:
    """Build the runtime from the environment and install it, once per process; its broker.

    The application's first module calls this before registering pipelines. A runtime
    installed already (by a test, or an earlier call) is kept."""
    runtime = installed_runtime()
    if runtime is None:
        settings = get_settings()
        logging.getLogger("backlane").setLevel(settings.log_level)
        log_limits.install()
        _apply_worker_settings(settings)
        runtime = install(Runtime(settings=settings, broker=build_broker(settings), clock=default_clock()))
    return runtime.broker


def app_modules(app: str | None = None) -> list[str]:
    """The modules to import: ``app`` (comma- or space-separated), else ``settings.app``."""
    names = app if app is not None else get_settings().app
    return [name for name in names.replace(",", " ").split() if name]


def load_app(app: str | None = None) -> App:
    """Import the application's modules (registering its pipelines) and return them."""
    for name in app_modules(app):
        importlib.import_module(name)
    return App(REGISTRY, get_runtime())


def serve_endpoint() -> int:
    """The process Dramatiq forks beside the workers: loads the application, then serves
    ``/health`` and ``/metrics`` (:mod:`backlane.operations.endpoint`)."""
    app = load_app()
    return endpoint.serve(app.registry, app.runtime)
