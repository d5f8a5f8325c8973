"""Tracing without a broker: where the trace context travels and how it is read, the signing rules
for it, the middleware installed only when tracing is on, and the one line without the extra.
The spans on the real broker: tests/integration/test_tracing.py."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from dramatiq.message import Message
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backlane import app
from backlane.errors import EXIT_CONFIG, Problem
from backlane.messaging import signing
from backlane.observability import carrier, tracing
from backlane.observability.middleware import TracingMiddleware
from backlane.settings import Settings, TracingSettings
from tests.unit.test_masstransit import INBOX, props, readme_envelope
from tests.unit.test_signing import broker, message, signed

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        (PARENT, PARENT),
        (PARENT.encode(), PARENT),
        (PARENT.upper(), None),  # W3C: lowercase hex only
        (PARENT[:-1], None),
        (PARENT + "0", None),
        ("ff" + PARENT[2:], None),  # version ff is invalid
        ("00-" + "g" * 32 + PARENT[35:], None),
        ({"traceparent": PARENT}, None),
        (None, None),
        ("x" * 100_000, None),
    ],
)
def test_a_traceparent_is_taken_only_well_formed(value: Any, taken: str | None) -> None:
    assert carrier.traceparent(value) == taken


def test_a_tracestate_is_bounded_and_printable() -> None:
    assert carrier.tracestate("vendor=1,other=2") == "vendor=1,other=2"
    assert carrier.tracestate("a=" + "b" * carrier.MAX_TRACESTATE_CHARS) is None
    assert carrier.tracestate("a=1\nb=2") is None
    assert carrier.tracestate(7) is None


def test_headers_give_traceparent_first_then_masstransit_activity_then_the_next_table() -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
    both = {"traceparent": PARENT, "tracestate": "v=1", "MT-Activity-Id": other}
    assert carrier.from_headers(both) == {"traceparent": PARENT, "tracestate": "v=1"}
    assert carrier.from_headers({"MT-Activity-Id": other.encode()}) == {"traceparent": other}
    assert carrier.from_headers({"MT-Activity-Id": "|abc.1."}, {"MT-Activity-Id": PARENT}) == {"traceparent": PARENT}
    assert carrier.from_headers(None, "not a table", {}) == {}


def test_the_masstransit_adapter_copies_the_activity_id_from_the_headers_or_the_envelope() -> None:
    body = readme_envelope()
    from_transport = INBOX.adapt(props("application/vnd.masstransit+json", **{"MT-Activity-Id": PARENT}), body)
    assert isinstance(from_transport, Message) and from_transport.options["traceparent"] == PARENT
    document = json.loads(body)
    document["headers"] = {"MT-Activity-Id": PARENT}
    from_envelope = INBOX.adapt(props("application/vnd.masstransit+json"), json.dumps(document).encode())
    assert isinstance(from_envelope, Message) and from_envelope.options["traceparent"] == PARENT
    without = INBOX.adapt(props("application/vnd.masstransit+json", **{"MT-Activity-Id": "garbage"}), body)
    assert isinstance(without, Message) and "traceparent" not in without.options


def test_an_unsigned_message_keeps_its_trace_context_but_not_the_first_attempt_link() -> None:
    problem, admitted = signing.checked(broker(), "orders", message(traceparent=PARENT, tracestate="v=1", colour=1))
    assert problem is None and admitted.options == {"traceparent": PARENT, "tracestate": "v=1"}
    problem, _ = signing.checked(broker(), "orders", message(**{carrier.FIRST_ATTEMPT: PARENT}))
    assert problem is not None and carrier.FIRST_ATTEMPT in problem
    problem, admitted = signing.checked(broker(), "orders", signed(message(**{carrier.FIRST_ATTEMPT: PARENT})))
    assert problem is None and admitted.options == {carrier.FIRST_ATTEMPT: PARENT}


def with_tracing(enabled: bool) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"tracing": TracingSettings(enabled=enabled)})


def test_the_middleware_is_installed_only_with_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tracing.Tracing] = []

    def build(settings: Settings) -> tracing.Tracing:
        built.append(tracing.build(settings, SimpleSpanProcessor(InMemorySpanExporter()), make_global=False))
        return built[-1]

    monkeypatch.setattr(app, "build_tracing", build)
    # An earlier test's in-process `backlane` command leaves the process marked as one.
    monkeypatch.setattr(app, "_command", False)
    assert not any(isinstance(m, TracingMiddleware) for m in app.build_middleware(with_tracing(False)))
    assert not built
    try:
        middleware = app.build_middleware(with_tracing(True))
        assert isinstance(middleware[0], TracingMiddleware), "first, so its span is current for the others"
        assert sum(isinstance(m, TracingMiddleware) for m in middleware) == 1
        monkeypatch.setattr(app, "_command", True)  # a `backlane` command: no spans to flush at exit
        assert not any(isinstance(m, TracingMiddleware) for m in app.build_middleware(with_tracing(True)))
        assert len(built) == 1
    finally:
        for made in built:
            made.shutdown()


def test_without_the_extra_tracing_stops_start_up_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.REQUIRED_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # what importing a package that is not there does
    with pytest.raises(Problem) as raised:
        tracing.build(with_tracing(True))
    assert raised.value.status == EXIT_CONFIG
    line = raised.value.line
    assert "\n" not in line and "BACKLANE_TRACING__ENABLED" in line and "pip install 'backlane[tracing]'" in line


def test_a_traced_message_moved_from_its_delay_queue_keeps_its_context() -> None:
    exporter = InMemorySpanExporter()
    made = tracing.build(with_tracing(True), SimpleSpanProcessor(exporter), make_global=False)
    try:
        middleware = made.middleware
        stub = SimpleNamespace()
        moved = message(traceparent=PARENT, eta=1)
        middleware.before_enqueue(stub, moved, None)  # type: ignore[arg-type]
        middleware.after_enqueue(stub, moved, None)  # type: ignore[arg-type]
        assert moved.options["traceparent"] == PARENT and not exporter.get_finished_spans()
        fresh = message()
        middleware.before_enqueue(stub, fresh, None)  # type: ignore[arg-type]
        middleware.after_enqueue(stub, fresh, None)  # type: ignore[arg-type]
        [span] = exporter.get_finished_spans()
        assert span.name == "publish orders" and span.attributes["messaging.system"] == "rabbitmq"
        assert carrier.traceparent(fresh.options["traceparent"]) is not None
        assert f"{span.context.span_id:016x}" in fresh.options["traceparent"]
    finally:
        made.shutdown()
