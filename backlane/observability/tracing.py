"""Tracing built from the settings: the SDK, its OTLP/HTTP exporter, the official httpx and
SQLAlchemy instrumentations, and the middleware that makes the messages' spans.

Only :func:`backlane.app.build_middleware` calls :func:`build`, and only when
``tracing.enabled`` is on; with it off nothing here is imported, so a worker runs without the
``tracing`` extra. With it on and the extra missing, :func:`build` raises one
:class:`~backlane.errors.Problem` naming the extra, and the worker refuses to start with it.

The SDK's standard environment variables are read by the SDK itself: ``OTEL_EXPORTER_OTLP_*``
(endpoint, headers, timeout), ``OTEL_TRACES_SAMPLER`` / ``_ARG``, ``OTEL_BSP_*`` (the batch
processor), ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``. ``tracing.endpoint`` and
``tracing.service_name``, when set, win over them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backlane.core import outcomes
from backlane.errors import EXIT_CONFIG, Problem

if TYPE_CHECKING:
    from backlane.observability.middleware import TracingMiddleware
    from backlane.settings import Settings

#: What ``pip install`` needs for tracing.
EXTRA = "backlane[tracing]"
#: The modules tracing needs, all from the ``tracing`` extra.
REQUIRED_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.httpx",
    "opentelemetry.instrumentation.sqlalchemy",
)
#: ``service.name`` when neither ``tracing.service_name`` nor ``OTEL_SERVICE_NAME`` says one.
DEFAULT_SERVICE_NAME = "backlane"


def missing_extra() -> Problem | None:
    """The one line a process with tracing on but without the ``tracing`` extra stops with."""
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = exc.name or name
            return Problem(
                f"BACKLANE_TRACING__ENABLED is on but {missing} is not installed: "
                f"pip install '{EXTRA}' (or turn tracing off)",
                EXIT_CONFIG,
            )
    return None


@dataclass
class Tracing:
    """Tracing as built: the provider every span goes through and the broker's middleware."""

    provider: Any
    middleware: TracingMiddleware

    def shutdown(self) -> None:
        """Stop instrumenting httpx and SQLAlchemy, stop listening to outcomes, flush the spans."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        SQLAlchemyInstrumentor().uninstrument()
        if self.middleware.note_outcome in outcomes.observers:
            outcomes.observers.remove(self.middleware.note_outcome)
        self.provider.shutdown()


def build(settings: Settings, processor: Any = None, *, make_global: bool = True) -> Tracing:
    """Tracing for this process. ``processor``: where spans go (default: batched to the OTLP/HTTP
    exporter); ``make_global``: also the process's OpenTelemetry tracer provider, so spans an
    application makes itself join the same traces. Raises :class:`Problem` without the extra."""
    problem = missing_extra()
    if problem is not None:
        raise problem
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from backlane.observability.middleware import TracingMiddleware

    config = settings.tracing
    service = config.service_name or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    if processor is None:
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint))
    provider.add_span_processor(processor)
    if make_global:
        trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # Wraps sqlalchemy.create_engine: every engine made from now on (backlane.db.engine looks it up
    # when it makes one) traces its statements. Its declared range stops before SQLAlchemy 2.1,
    # whose engine events it uses are unchanged: tests/integration/test_tracing.py checks its spans.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    middleware = TracingMiddleware(provider.get_tracer("backlane"), provider)
    outcomes.observers.append(middleware.note_outcome)
    return Tracing(provider, middleware)
