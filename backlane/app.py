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
from typing import TYPE_CHECKING

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

from backlane.clients.storage import check_storage
from backlane.core import log_format, log_limits, log_repeats, outcomes, startup
from backlane.core.clock import default_clock
from backlane.core.registry import REGISTRY, Registry
from backlane.core.runtime import Runtime, get_runtime, install, installed_runtime
from backlane.errors import Problem
from backlane.messaging import signing
from backlane.messaging.broker import BacklaneBroker
from backlane.operations import endpoint
from backlane.operations.metrics import build_metrics_middleware
from backlane.settings import Settings, SettingsError, get_settings, settings_error

if TYPE_CHECKING:
    from backlane.observability import tracing

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


class Preflight(Middleware):
    """A worker process checks, before its threads start (every module imported by then), that
    every pipeline's settings are valid and the database has backlane's schema; else it refuses
    to start in one line (:mod:`backlane.core.startup`). Workers built in-process (tests) skip it."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if startup.process_role() != startup.WORKER:
            return
        preflight(startup.WORKER)


class OutcomeLines(Middleware):
    """A worker process writes its outcome lines in batches (see :mod:`backlane.core.outcomes`),
    and every line held is written before it exits. Workers built in-process (tests) log as before."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if startup.process_role() == startup.WORKER:
            outcomes.batch_lines()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        outcomes.flush_lines()


def preflight(role: str) -> None:
    """Every registered pipeline's section read (a bad one refuses start), then the database."""
    runtime = get_runtime()
    for registered in REGISTRY:
        runtime.config(registered.pipeline)
    database = runtime.settings.database
    startup.check_database(database.url.get_secret_value(), database.connect_timeout, role)


def apply_log_levels(settings: Settings) -> None:
    """backlane's loggers at ``log_level``; httpx's line per request only when asked for
    (``log_http_requests``): an order's outcome line says how its calls ended."""
    logging.getLogger("backlane").setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.INFO if settings.log_http_requests else logging.WARNING)


def build_middleware(settings: Settings) -> list[Middleware]:
    retry = settings.retries
    middleware: list[Middleware] = [
        TimeLimit(time_limit=retry.time_limit_ms),
        ShutdownNotifications(),
        Retries(
            max_retries=retry.max_retries,
            min_backoff=retry.min_backoff_ms,
            max_backoff=retry.max_backoff_ms,
            retry_when=_retry_when(retry.max_retries),
        ),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY),
        Preflight(),
        OutcomeLines(),
    ]
    if settings.messages.dramatiq_composition:
        # Off by default: they run whatever message a message names (pipe_target, on_success).
        middleware[2:2] = [Callbacks(), Pipelines()]
    if settings.worker.metrics_port:
        middleware.insert(0, build_metrics_middleware(settings, serve_endpoint))
    if settings.tracing.enabled and not _command:
        # First: its span is current for every other middleware's hooks, and it ends last (after
        # Retries has sent an attempt's retry, which links to the attempt). Not in a `backlane`
        # command: flushing its spans at exit to a collector that is down would hold it there.
        middleware.insert(0, build_tracing(settings).middleware)
    return middleware


def build_tracing(settings: Settings) -> tracing.Tracing:
    """OpenTelemetry for this process (imported only now: tracing off needs none of it); a
    :class:`~backlane.errors.Problem` naming the ``tracing`` extra when it is not installed."""
    from backlane.observability import tracing

    return tracing.build(settings)


def build_broker(settings: Settings) -> BacklaneBroker:
    return BacklaneBroker(
        url=settings.broker.url.get_secret_value(),
        middleware=build_middleware(settings),
        queue_type=settings.broker.queue_type,
        dead_letter_ttl_ms=settings.broker.dead_letter_ttl_ms,
        reconnect_timeout=settings.broker.reconnect_timeout,
        connect_timeout=settings.broker.command_timeout / 2 if _command else None,
        signing_key=signing.key_of(settings),
        max_body_bytes=settings.broker.max_body_bytes,
        heartbeat=settings.broker.heartbeat_seconds,
        delay_poll_ms=settings.broker.delay_poll_ms,
    )


#: True in a `backlane` command: short timeouts, no waiting out outages (see :func:`run_as_command`).
_command = False


def run_as_command() -> None:
    """This process is a `backlane` command: RabbitMQ and the database get ``broker.command_timeout``
    to answer (not the reconnect window of long-running processes), so a command reports an
    unreachable dependency within seconds. Call before :func:`load_app`."""
    global _command
    _command = True


def command_settings(settings: Settings) -> Settings:
    """``settings`` with the short timeouts of a command."""
    timeout = settings.broker.command_timeout
    broker = settings.broker.model_copy(update={"reconnect_timeout": timeout})
    database = settings.database.model_copy(
        update={"connect_timeout": max(1, min(settings.database.connect_timeout, round(timeout)))}
    )
    return settings.model_copy(update={"broker": broker, "database": database})


def _apply_worker_settings(settings: Settings) -> None:
    """Dramatiq reads its prefetch from the environment when it is imported, before our
    settings exist; the worker reads the module value when it starts, after importing us."""
    import dramatiq.worker

    if settings.broker.prefetch:
        dramatiq.worker.QUEUE_PREFETCH = settings.broker.prefetch
    if settings.broker.delay_prefetch:
        dramatiq.worker.DELAY_QUEUE_PREFETCH = settings.broker.delay_prefetch


def setup() -> BacklaneBroker:
    """Build the runtime from the environment and install it, once per process; its broker.

    The application's first module calls this before registering pipelines. A runtime
    installed already (by a test, or an earlier call) is kept."""
    runtime = installed_runtime()
    if runtime is None:
        try:
            settings = get_settings()
        except SettingsError as exc:
            if startup.process_role() is not None:  # a worker or the clock: one line, no traceback
                startup.refuse(str(exc))
            raise
        if _command:
            settings = command_settings(settings)
        apply_log_levels(settings)
        log_limits.install()
        log_format.apply(settings.log_format)
        log_repeats.install(settings.log_repeat_seconds)
        _apply_worker_settings(settings)
        try:
            check_storage(settings.storage)  # kind s3 without its extra or its bucket
            broker = build_broker(settings)
        except Problem as exc:  # tracing on without its extra
            if startup.process_role() is not None:
                startup.refuse(exc)
            raise
        runtime = install(Runtime(settings=settings, broker=broker, clock=default_clock()))
    from backlane.operations.jobs import declare_job_actor

    declare_job_actor(runtime.broker)  # the framework's own actor: bulk jobs on the ``operations`` queue
    return runtime.broker


def app_modules(app: str | None = None) -> list[str]:
    """The modules to import: ``app`` (comma- or space-separated), else ``settings.app``."""
    names = app if app is not None else get_settings().app
    return [name for name in names.replace(",", " ").split() if name]


def load_app(app: str | None = None) -> App:
    """Import the application's modules (registering its pipelines) and return them."""
    for name in app_modules(app):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # the application is there; something it imports is not
            raise settings_error([f"BACKLANE_APP (or --app): no module {name!r} on the Python path"]) from None
    return App(REGISTRY, get_runtime())


def serve_endpoint() -> int:
    """The process Dramatiq forks beside the workers: loads the application, then serves
    ``/health`` and ``/metrics`` (:mod:`backlane.operations.endpoint`). When the application
    cannot load, the worker processes say why (they load it too); this one just ends."""
    try:
        app = load_app()
    except (SettingsError, SystemExit):
        return 0
    return endpoint.serve(app.registry, app.runtime)
