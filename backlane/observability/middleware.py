"""The Dramatiq middleware that traces backlane's messages (public hooks only).

* **publish**: a PRODUCER span per message published (``before_enqueue`` / ``after_enqueue``),
  a child of whatever span is current (a discover tick, an attempt scheduling its retry, an
  application's own span); its W3C context goes into the message's ``traceparent`` /
  ``tracestate`` options (:mod:`backlane.observability.carrier`), signed with the rest. A
  traced message the worker moves from its ``.DQ`` to its queue keeps its context: a move is
  not a publish.
* **process**: a CONSUMER span per message, made current while the actor runs, the child of
  the message's ``traceparent`` (ours, another service's, or MassTransit's ``MT-Activity-Id``
  copied by the adapter). On a per-item message it carries the attempt's outcome as
  :mod:`backlane.core.outcomes` records it (pipeline, item, attempt, outcome, error class and
  reason); on a discover tick it is named ``discover <pipeline>`` and carries the count claimed.
  httpx and SQLAlchemy's instrumentations make their spans its children.
* **retries**: a retry of an attempt carries the first attempt's context
  (:data:`~backlane.observability.carrier.FIRST_ATTEMPT`), and every later attempt's span links
  to it.

Built by :func:`backlane.observability.tracing.build`, only when tracing is on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from backlane.core.discovery import TickResult
from backlane.observability import carrier

#: Spans of messages being published by one thread, kept until their publish ends; a batch whose
#: publish failed leaves its spans here unended (never exported), and past this many they go.
MAX_PUBLISHING = 10_000
#: Longest a stopping worker waits for its last spans to be exported, milliseconds.
FLUSH_TIMEOUT_MS = 5_000
#: Outcomes an attempt's span is marked as an error for.
ERROR_OUTCOMES = frozenset({"failed", "retry"})

_propagator = TraceContextTextMapPropagator()


@dataclass
class _Consuming:
    """The message a worker thread is processing, and its span."""

    message_id: str
    span: Span
    token: object
    #: The ``traceparent`` of the message's first attempt's span (this one's, on a first attempt).
    first: str
    #: The attempt's outcome, once :mod:`backlane.core.outcomes` recorded it.
    outcome: str | None = None


def traceparent_of(span: Span) -> str:
    """``span``'s context as a W3C traceparent."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _span_context(parent: str) -> trace.SpanContext:
    return trace.get_current_span(_propagator.extract({carrier.TRACEPARENT: parent})).get_span_context()


class TracingMiddleware(Middleware):
    """Spans for publishing and processing messages; see the module's docstring.

    Parameters: ``tracer``, where the spans are made; ``provider``, flushed when a worker stops.
    Leaving it out (tracing off) leaves messages as they were: no options, no signature added."""

    def __init__(self, tracer: Tracer, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider
        self._local = threading.local()

    # -- publishing ---------------------------------------------------------
    def _publishing(self) -> dict[str, Span]:
        spans: dict[str, Span] | None = getattr(self._local, "publishing", None)
        if spans is None:
            spans = self._local.publishing = {}
        return spans

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:  # type: ignore[type-arg]
        options = message.options
        if not trace.get_current_span().get_span_context().is_valid and carrier.from_options(options):
            return  # moved from its .DQ by the worker (or sent again as it was): already traced
        consuming: _Consuming | None = getattr(self._local, "consuming", None)
        if consuming is not None and consuming.message_id == message.message_id:
            options[carrier.FIRST_ATTEMPT] = consuming.first  # a retry of the attempt running now
        queue = q_name(message.queue_name)
        span = self.tracer.start_span(
            f"publish {queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": queue,
                "messaging.rabbitmq.destination.routing_key": message.queue_name,
                "messaging.message.id": message.message_id,
                "backlane.actor": message.actor_name,
                **({"backlane.delay_ms": delay} if delay else {}),
            },
        )
        written: dict[str, str] = {}
        _propagator.inject(written, context=trace.set_span_in_context(span))
        options[carrier.TRACEPARENT] = written[carrier.TRACEPARENT]
        if carrier.TRACESTATE in written:
            options[carrier.TRACESTATE] = written[carrier.TRACESTATE]
        else:
            options.pop(carrier.TRACESTATE, None)
        publishing = self._publishing()
        if len(publishing) >= MAX_PUBLISHING:
            publishing.clear()
        publishing[message.message_id] = span

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:  # type: ignore[type-arg]
        span = self._publishing().pop(message.message_id, None)
        if span is not None:
            span.end()

    # -- processing ---------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        options = message.options
        parent = _propagator.extract(carrier.from_options(options))
        first = carrier.traceparent(options.get(carrier.FIRST_ATTEMPT))
        links = [Link(_span_context(first), {"backlane.link": "first attempt"})] if first else None
        queue = q_name(message.queue_name)
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "backlane.actor": message.actor_name,
        }
        retries = options.get("retries")
        if isinstance(retries, int) and not isinstance(retries, bool):
            attributes["backlane.delivery"] = retries + 1
        span = self.tracer.start_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._local.consuming = _Consuming(message.message_id, span, token, first or traceparent_of(span))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        consuming = self._end_consuming(message)
        if consuming is None:
            return
        span = consuming.span
        if isinstance(result, TickResult):
            span.update_name(f"discover {result.pipeline}")
            span.set_attributes(
                {
                    "backlane.pipeline": result.pipeline,
                    "backlane.discover.claimed": result.enqueued,
                    "backlane.discover.cut": result.cut,
                }
            )
        if (
            exception is not None
            and not isinstance(exception, dramatiq.Retry)
            and "backlane.outcome" not in (getattr(span, "attributes", None) or {})
        ):
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        consuming = self._end_consuming(message)
        if consuming is not None:
            consuming.span.set_attribute("backlane.outcome", "skipped")
            consuming.span.end()

    def _end_consuming(self, message: MessageProxy) -> _Consuming | None:
        consuming: _Consuming | None = getattr(self._local, "consuming", None)
        if consuming is None or consuming.message_id != message.message_id:
            return None
        self._local.consuming = None
        otel_context.detach(consuming.token)  # type: ignore[arg-type]
        return consuming

    def note_outcome(self, fields: dict[str, Any]) -> None:
        """An attempt's outcome (:data:`backlane.core.outcomes.observers`) on its span."""
        consuming: _Consuming | None = getattr(self._local, "consuming", None)
        if consuming is None:
            return
        span = consuming.span
        consuming.outcome = str(fields.get("outcome", ""))
        item = fields.get("item")
        attributes: dict[str, Any] = {
            "backlane.pipeline": fields.get("pipeline", ""),
            "backlane.item": item if isinstance(item, str | int | float) else str(item),
            "backlane.attempt": fields.get("attempt", 0),
            "backlane.outcome": fields.get("outcome", ""),
        }
        for name, key in (("backlane.error_class", "error_class"), ("backlane.reason", "reason")):
            if fields.get(key):
                attributes[name] = fields[key]
        span.set_attributes(attributes)
        if fields.get("outcome") in ERROR_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, str(fields.get("reason") or fields.get("outcome"))))

    # -- shutdown -----------------------------------------------------------
    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.provider is not None:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)
