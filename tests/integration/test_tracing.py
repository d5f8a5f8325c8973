"""Tracing on the real broker: a publisher's trace continues through the worker to the order API
simulator and the database, captured by the OpenTelemetry SDK's in-memory exporter.

Tracing is built as a worker builds it (:func:`backlane.observability.tracing.build`: the httpx and
SQLAlchemy instrumentations, the middleware first on the broker), the database opened after it, as
a worker's runtime opens it. The MassTransit bodies are the ones of test_masstransit_orders.py,
with the ``MT-Activity-Id`` header MassTransit's RabbitMQ transport adds."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from backlane.core.registry import REGISTRY
from backlane.db.engine import Database
from backlane.messaging.queues import declare_all
from backlane.observability import tracing
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_masstransit_orders import ENVELOPE, RAW, content, mt_envelope, publish, raw_headers
from tests.integration.test_orders_pipeline import all_settled, publish_raw
from tests.waiting import wait_until


@dataclass
class Traced:
    app: App
    exporter: InMemorySpanExporter
    tracing: tracing.Tracing

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def in_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.context.trace_id == trace_id]


@pytest.fixture
def traced(app: App) -> Iterator[Traced]:
    exporter = InMemorySpanExporter()
    built = tracing.build(app.runtime.settings, SimpleSpanProcessor(exporter), make_global=False)
    # Opened after tracing started, as a worker's runtime opens it: its statements are traced.
    database = Database(app.db.url)
    app.runtime._database = database
    app.broker.middleware.insert(0, built.middleware)
    app.simulator.configure(order_settle_polls=0)  # POST answers pending, the first GET the result
    declare_all(app.broker)  # the MassTransit exchange, as `backlane declare-queues` declares it
    worker = dramatiq.Worker(app.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield Traced(app, exporter, built)
    finally:
        worker.stop(timeout=10_000)
        app.broker.middleware[:] = [
            m for m in app.broker.middleware if m is not built.middleware and getattr(m, "worker", None) is not worker
        ]
        built.shutdown()
        database.dispose()


def remote_parent() -> tuple[int, int, str]:
    """A publisher's span: its trace id, span id and W3C traceparent."""
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    return trace_id, span_id, f"00-{trace_id:032x}-{span_id:016x}-01"


def one(spans: list[ReadableSpan], what: str, **attributes: Any) -> ReadableSpan:
    found = [s for s in spans if s.name == what and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{what} {attributes}: {[(s.name, dict(s.attributes or {})) for s in spans]}"
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def http_method(span: ReadableSpan) -> str | None:
    attributes = span.attributes or {}
    return attributes.get("http.request.method") or attributes.get("http.method")  # type: ignore[return-value]


def assert_order_traced(traced: Traced, trace_id: int, remote_span_id: int) -> None:
    """The inbox's span is the publisher's child; it publishes the per-item message, whose span
    holds the order API's POST and GET and the row's UPDATE."""
    done = {"backlane.pipeline": "orders", "backlane.outcome": "succeeded"}
    wait_until(
        lambda: any(
            s.name == "process orders" and s.attributes.get("backlane.outcome") for s in traced.in_trace(trace_id)
        ),
        timeout=30,
        what="the per-item span in the publisher's trace",
    )
    spans = traced.in_trace(trace_id)
    inbox = one(spans, f"process {ORDER_CREATED_QUEUE}")
    assert inbox.kind is SpanKind.CONSUMER
    assert inbox.parent is not None and inbox.parent.is_remote and inbox.parent.span_id == remote_span_id
    assert inbox.attributes["messaging.system"] == "rabbitmq"
    producer = one(spans, "publish orders")
    assert producer.kind is SpanKind.PRODUCER and producer.parent.span_id == inbox.context.span_id  # type: ignore[union-attr]
    assert producer.attributes["messaging.destination.name"] == "orders"
    item = one(spans, "process orders", **done)
    assert item.kind is SpanKind.CONSUMER and item.parent.span_id == producer.context.span_id  # type: ignore[union-attr]
    assert item.attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]
    assert item.attributes["backlane.attempt"] == 1 and item.attributes["backlane.item"]
    below = children(spans, item)
    calls = [(http_method(s), s.kind) for s in below if http_method(s)]
    assert calls == [("POST", SpanKind.CLIENT), ("GET", SpanKind.CLIENT)], [s.name for s in below]
    updates = [s for s in below if s.name.startswith("UPDATE")]
    assert updates and all(s.kind is SpanKind.CLIENT for s in updates), [s.name for s in below]


def test_a_masstransit_activity_continues_to_the_api_calls_and_the_update(traced: Traced) -> None:
    trace_id, span_id, activity = remote_parent()
    message_id = str(uuid.uuid4())
    headers = {"MT-Activity-Id": activity, "MT-Activity-Correlation-Context": "tenant=shop01"}
    publish(traced.app, mt_envelope(content(str(uuid.uuid4())), message_id), ENVELOPE, message_id, headers)
    assert_order_traced(traced, trace_id, span_id)


def test_a_traceparent_header_continues_the_same_way(traced: Traced) -> None:
    trace_id, span_id, parent = remote_parent()
    message_id = str(uuid.uuid4())
    headers = {**raw_headers(message_id), "traceparent": parent, "tracestate": "vendor=1"}
    publish(traced.app, json.dumps(content(str(uuid.uuid4()))).encode(), RAW, message_id, headers)
    assert_order_traced(traced, trace_id, span_id)
    inbox = one(traced.in_trace(trace_id), f"process {ORDER_CREATED_QUEUE}")
    assert inbox.parent.trace_state.to_header() == "vendor=1"  # type: ignore[union-attr]


def test_a_dramatiq_envelope_without_signature_keeps_its_traceparent(traced: Traced) -> None:
    app = traced.app
    [order_id] = create_orders(app.db, 1, app.clock.now())
    trace_id, span_id, parent = remote_parent()
    envelope = OrderCreated(version=1, order_id=order_id).envelope()
    envelope["options"] = {"traceparent": parent}
    publish_raw(app, json.dumps(envelope).encode())
    assert_order_traced(traced, trace_id, span_id)


def test_a_retried_item_links_every_attempt_to_the_first(traced: Traced) -> None:
    app = traced.app
    [order_id] = create_orders(app.db, 1, app.clock.now())
    app.simulator.configure(order_settle_polls=0, outage=["orders"])
    tracer = traced.tracing.middleware.tracer
    with tracer.start_as_current_span("an application's request") as root:
        REGISTRY.get("orders").process_actor.send(order_id)
    trace_id = root.get_span_context().trace_id

    def attempts() -> list[ReadableSpan]:
        found = [s for s in traced.in_trace(trace_id) if s.name == "process orders"]
        return sorted(found, key=lambda s: s.attributes.get("backlane.attempt", 0))

    wait_until(lambda: len(attempts()) >= 1, timeout=30, what="the first attempt failing")
    app.simulator.configure(order_settle_polls=0, outage=[])
    wait_until(lambda: all_settled(app, 1), timeout=30, what="the order settled")
    wait_until(lambda: attempts()[-1].attributes.get("backlane.outcome") == "succeeded", timeout=30, what="a span")
    first, *later = attempts()
    assert first.attributes["backlane.outcome"] == "retry"
    assert first.attributes["backlane.error_class"] and first.attributes["backlane.reason"]
    assert first.status.status_code.name == "ERROR" and not first.links
    # Each later delivery: a retry (attempt 2, 3, ...) or a wait for the breaker (the same attempt).
    assert later and all(s.attributes["backlane.attempt"] >= 2 for s in later)
    for attempt in later:
        assert [link.context.span_id for link in attempt.links] == [first.context.span_id]
    # The retry was published from within the first attempt, in the same trace.
    retry = [s for s in children(traced.in_trace(trace_id), first) if s.kind is SpanKind.PRODUCER]
    assert retry and retry[0].attributes["messaging.message.id"] == first.attributes["messaging.message.id"]


def test_a_discover_tick_is_one_span_with_the_count_claimed(traced: Traced) -> None:
    app = traced.app
    create_orders(app.db, 3, app.clock.now())
    discover_actor = REGISTRY.get("orders").discover_actor
    assert discover_actor is not None
    discover_actor.send()
    wait_until(lambda: all_settled(app, 3), timeout=30, what="three orders settled")
    wait_until(lambda: any(s.name == "discover orders" for s in traced.spans()), timeout=30, what="the tick's span")
    tick = one(traced.spans(), "discover orders")
    assert tick.attributes["backlane.discover.claimed"] == 3
    trace_id = tick.context.trace_id
    wait_until(
        lambda: len([s for s in traced.in_trace(trace_id) if s.attributes.get("backlane.outcome") == "succeeded"]) == 3,
        timeout=30,
        what="three item spans in the tick's trace",
    )
    published = [s for s in children(traced.in_trace(trace_id), tick) if s.kind is SpanKind.PRODUCER]
    assert len(published) == 3
