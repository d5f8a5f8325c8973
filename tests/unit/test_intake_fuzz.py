"""intake.admit is total: property-based tests over any body and any property table.

Every delivery a consumer reads was written by a publisher backlane does not control. Whatever
it is (random bytes, random JSON, Dramatiq- or MassTransit-shaped envelopes with fields of any
type and size, JSON nested 100,000 deep, any content type, headers and message id), ``admit``
must return a Message for an actor of the queue or a Refused whose reason a person reads:
bounded, printable, no Python repr. An exception there would restart the consumer and put the
message back at the head of the queue, stalling it for every worker (issue 21).

Budget: the ``ci`` hypothesis profile (300 examples per test, no deadline) runs by default.
For a longer run by hand::

    BACKLANE_FUZZ_PROFILE=long scripts/test tests/unit/test_intake_fuzz.py -q   # 20,000 each

(``BACKLANE_FUZZ_EXAMPLES=100000`` sets any other count.)
"""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace
from typing import Any
from unittest import mock

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backlane.messaging.deadletter import DeadLetteringConsumer
from backlane.messaging.intake import MAX_ID_BYTES, MAX_REASON_CHARS, Refused, admit
from backlane.messaging.masstransit import ENVELOPE_CONTENT_TYPE, RAW_JSON_CONTENT_TYPE, MassTransitInbox
from backlane.settings import SettingsError, load_settings
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE, order_created_from_masstransit

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("BACKLANE_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("BACKLANE_FUZZ_PROFILE", "ci"))

LIMIT = 1024 * 1024  # the default
#: Python's own words that must never reach a person as a reason.
PYTHON_TEXT = ("NoneType", "object is not", "object has no attribute", "Traceback", "KeyError")
#: A bytes repr (b'...'), which is how a body used to leak into a reason.
BYTES_REPR = re.compile(r"(^|[\s(:=\[])b['\"]")


def make_broker() -> StubBroker:
    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, queue_name="orders_inbox", actor_name="order_created")
    def order_created(event: Any) -> None: ...

    @dramatiq.actor(broker=broker, queue_name="orders", actor_name="process_orders")
    def process_orders(*items: Any) -> None: ...

    inbox = MassTransitInbox(
        "orders_inbox", "order_created", ORDER_CREATED_MESSAGE_TYPE, order_created_from_masstransit
    )
    broker.masstransit_inboxes = {"orders_inbox": inbox}  # type: ignore[attr-defined]
    broker.max_body_bytes = LIMIT  # type: ignore[attr-defined]
    broker.signing_key = b"fuzz-key" * 4  # type: ignore[attr-defined]
    return broker


BROKER = make_broker()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
any_value = json_values | st.text(min_size=200, max_size=400)
urns = st.sampled_from(["urn:message:SharedContracts:OrderCreated", "urn:message:A:B", ""]) | st.text(max_size=30)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is sometimes left out (``...``), sometimes any JSON value, sometimes right."""
    return st.just(...) | any_value | strategy


@st.composite
def dramatiq_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "queue_name": draw(maybe(st.sampled_from(["orders_inbox", "orders", "elsewhere"]))),
        "actor_name": draw(maybe(st.sampled_from(["order_created", "process_orders", "nope", ""]))),
        "args": draw(maybe(st.lists(json_values, max_size=3))),
        "kwargs": draw(maybe(st.dictionaries(st.text(max_size=8), json_values, max_size=3))),
        "options": draw(maybe(st.dictionaries(st.sampled_from(["retries", "eta", "x", "masstransit"]), json_values))),
        "message_id": draw(maybe(st.text(min_size=1, max_size=300))),
        "message_timestamp": draw(maybe(st.integers(min_value=-(10**20), max_value=10**20))),
    }
    if draw(st.booleans()):
        fields[draw(st.text(max_size=10))] = draw(json_values)
    return {k: v for k, v in fields.items() if v is not ...}


@st.composite
def masstransit_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    message = draw(
        maybe(
            st.fixed_dictionaries(
                {"requestId": any_value},
                optional={
                    "customer": any_value,
                    "items": st.lists(json_values | st.dictionaries(st.text(), any_value)),
                },
            )
        )
    )
    fields = {
        "messageId": draw(maybe(st.text(min_size=1, max_size=300))),
        "messageType": draw(maybe(st.lists(urns, max_size=3))),
        "message": message,
        "headers": draw(maybe(st.dictionaries(st.text(max_size=8), json_values))),
    }
    return {k: v for k, v in fields.items() if v is not ...}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


deep = st.integers(min_value=1, max_value=3000).flatmap(
    lambda n: st.sampled_from([b"[" * n, b'{"a":' * n, b"[" * n + b"]" * n, b'{"actor_name":' + b"[" * n])
)
bodies = (
    st.binary(max_size=2000)
    | json_values.map(dumps)
    | dramatiq_envelopes().map(dumps)
    | masstransit_envelopes().map(dumps)
    | deep
    | st.binary(max_size=200).map(lambda b: b"\xef\xbb\xbf" + b)  # a UTF-8 BOM, then anything
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
header_values = json_values | st.binary(max_size=50) | st.text(min_size=250, max_size=600)
properties = st.builds(
    SimpleNamespace,
    content_type=st.none()
    | st.sampled_from(
        [RAW_JSON_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE, f"{RAW_JSON_CONTENT_TYPE}; charset=utf-8", "text/xml"]
    )
    | st.text(max_size=300)
    | st.integers(),
    headers=st.none()
    | st.dictionaries(st.sampled_from(["MT-MessageType", "MessageId", "x"]) | st.text(max_size=8), header_values)
    | st.integers()
    | st.lists(st.text(max_size=3)),
    message_id=st.none() | st.text(max_size=300) | st.integers(),
)
queues = st.sampled_from(["orders_inbox", "orders", "orders.DQ", "orders_inbox.DQ"])


def assert_total(result: Any, queue: str) -> None:
    assert isinstance(result, Message | Refused), type(result)
    if isinstance(result, Refused):
        reason = result.reason
        assert isinstance(reason, str) and reason
        assert len(reason) <= MAX_REASON_CHARS + 40, len(reason)
        assert reason.isprintable(), reason
        reason.encode("utf-8")  # an AMQP header value: must encode
        assert not any(text in reason for text in PYTHON_TEXT), reason
        assert not BYTES_REPR.search(reason), reason
        assert "could not be read (" not in reason, f"the last resort caught a known case: {reason}"
        return
    assert result.queue_name == queue
    assert BROKER.actors[result.actor_name].queue_name == queue.removesuffix(".DQ")
    assert isinstance(result.message_id, str) and len(result.message_id.encode("utf-8")) <= MAX_ID_BYTES
    assert isinstance(result.args, tuple) and isinstance(result.kwargs, dict) and isinstance(result.options, dict)
    result.encode()  # it can be sent on (retried, dead-lettered)


@given(body=bodies, props=properties, queue=queues)
def test_admit_never_raises_on_any_delivery(body: bytes, props: SimpleNamespace, queue: str) -> None:
    assert_total(admit(BROKER, queue, props, body), queue)


@given(body=bodies, content_type=st.sampled_from([None, RAW_JSON_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE]))
def test_admit_never_raises_on_the_inbox_for_each_content_type(body: bytes, content_type: str | None) -> None:
    props = SimpleNamespace(content_type=content_type, headers={}, message_id=None)
    assert_total(admit(BROKER, "orders_inbox", props, body), "orders_inbox")


@given(envelope=masstransit_envelopes())
def test_masstransit_envelopes_are_taken_or_refused_in_words(envelope: dict[str, Any]) -> None:
    props = SimpleNamespace(content_type=ENVELOPE_CONTENT_TYPE, headers={}, message_id=None)
    assert_total(admit(BROKER, "orders_inbox", props, dumps(envelope)), "orders_inbox")


# -- the hostile bodies of issue 21, each with the reason it gets -----------------------------

DEEP = b"[" * 100_000
NO_TYPE = SimpleNamespace(content_type=None, headers=None, message_id=None)
JSON = SimpleNamespace(content_type=RAW_JSON_CONTENT_TYPE, headers={}, message_id=None)
MT = SimpleNamespace(content_type=ENVELOPE_CONTENT_TYPE, headers={}, message_id=None)
ENVELOPE = {"queue_name": "orders_inbox", "actor_name": "order_created", "args": [{}], "kwargs": {}, "options": {}}
MT_ENVELOPE = {"messageType": ["urn:message:SharedContracts:OrderCreated"], "message": {"requestId": "r-1"}}


@pytest.mark.parametrize(
    ("props", "body", "reason"),
    [
        (JSON, DEEP, "nested too deeply"),
        (MT, DEEP, "nested too deeply"),
        (NO_TYPE, DEEP, "nested too deeply"),
        (NO_TYPE, b'{"a":' * 100_000, "nested too deeply"),
        (NO_TYPE, dumps({**ENVELOPE, "message_id": "m" * 300}), "message_id is 300 characters long"),
        (NO_TYPE, dumps({**ENVELOPE, "message_id": 7}), "message_id must be a non-empty string"),
        (MT, dumps({**MT_ENVELOPE, "messageId": "m" * 300}), "messageId is 300 characters long"),
        (MT, dumps({**MT_ENVELOPE, "messageId": 12}), "messageId must be a non-empty string, got a number"),
        (NO_TYPE, b"null", "must be a JSON object, got null"),
        (NO_TYPE, b"[1]", "must be a JSON object, got an array"),
        (NO_TYPE, b'{"args":5}', "missing"),
        (NO_TYPE, dumps({**ENVELOPE, "args": 5}), "args must be an array, got a number"),
        (NO_TYPE, dumps({**ENVELOPE, "message_timestamp": 10**30}), "message_timestamp"),
        (NO_TYPE, dumps({**ENVELOPE, "message_timestamp": "soon"}), "message_timestamp"),
        (NO_TYPE, dumps({**ENVELOPE, "pipe_target": {}}), "unknown field(s) pipe_target"),
        (NO_TYPE, b"\xff\xfe" * 500_000, "not UTF-8 text"),  # 1 MB, non-UTF-8
        (JSON, b"\xff\xfe" * 30_000, "not UTF-8 text"),
        (NO_TYPE, b"1" * 5000, "number too long to read"),  # past Python's 4,300-digit int limit
        (MT, dumps({**MT_ENVELOPE, "message": {"requestId": "r", "items": [{1: 2}]}}).replace(b'"1"', b"1"), "JSON"),
        (SimpleNamespace(content_type=5, headers=None, message_id=None), b"{}", "content type must be text"),
        (SimpleNamespace(content_type=None, headers=[1], message_id=None), b"{}", "headers must be a table"),
        (SimpleNamespace(content_type=None, headers=None, message_id="\ud800"), b"{}", "lone surrogate"),
        (JSON, b"{}", "RequestId"),
        (SimpleNamespace(content_type="text/" + "x" * 400, headers={}, message_id=None), b"{}", "not accepted"),
    ],
)
def test_each_hostile_body_is_refused_with_its_reason(props: SimpleNamespace, body: bytes, reason: str) -> None:
    result = admit(BROKER, "orders_inbox", props, body)
    assert isinstance(result, Refused), result
    assert reason in result.reason
    assert_total(result, "orders_inbox")


def test_a_body_over_the_limit_is_refused_unread_naming_its_size_and_the_setting() -> None:
    body = b'{"x": "' + b"A" * LIMIT + b'"}'
    result = admit(BROKER, "orders_inbox", NO_TYPE, body)
    assert isinstance(result, Refused)
    assert f"{len(body):,} bytes" in result.reason and "BACKLANE_BROKER__MAX_BODY_BYTES" in result.reason
    assert "AAAA" not in result.reason


def test_a_valid_envelope_and_a_masstransit_envelope_are_admitted() -> None:
    message = admit(BROKER, "orders_inbox", NO_TYPE, dumps({**ENVELOPE, "message_id": "m-1"}))
    assert isinstance(message, Message) and message.message_id == "m-1"
    adapted = admit(BROKER, "orders_inbox", MT, dumps({**MT_ENVELOPE, "messageId": "m-2"}))
    assert isinstance(adapted, Message) and adapted.message_id == "m-2" and adapted.actor_name == "order_created"


def test_an_unexpected_failure_inside_admit_becomes_a_generic_refusal() -> None:
    with mock.patch("backlane.messaging.intake.decode_envelope", side_effect=TypeError("'NoneType' object")):
        result = admit(BROKER, "orders_inbox", NO_TYPE, b"{}")
    assert isinstance(result, Refused) and "NoneType" not in result.reason
    assert "could not be read (TypeError)" in result.reason


# -- the consumer: a delivery it cannot dead-letter is rejected, never raised nor acked --------


def consumer_with(body: bytes, dead_letter: Exception | None) -> tuple[DeadLetteringConsumer, mock.Mock]:
    consumer = DeadLetteringConsumer.__new__(DeadLetteringConsumer)
    consumer.broker = BROKER  # type: ignore[assignment]
    consumer.queue_name = "orders_inbox"
    consumer.known_tags = set()
    consumer.channel = mock.Mock()
    method = SimpleNamespace(delivery_tag=7, redelivered=False)
    consumer.iterator = iter([(method, NO_TYPE, body)])
    consumer._dead_letter_raw = mock.Mock(side_effect=dead_letter)  # type: ignore[method-assign]
    return consumer, consumer.channel


def test_a_refused_delivery_is_acked_once_dead_lettered() -> None:
    consumer, channel = consumer_with(DEEP, None)
    assert next(consumer) is None
    channel.basic_ack.assert_called_once_with(7)
    channel.basic_nack.assert_not_called()


@pytest.mark.parametrize("error", [ValueError("ShortStringTooLong"), RuntimeError("boom"), RecursionError()])
def test_a_delivery_that_cannot_be_dead_lettered_is_rejected_to_rabbitmq_not_raised(error: Exception) -> None:
    consumer, channel = consumer_with(b"null", error)
    assert next(consumer) is None
    channel.basic_nack.assert_called_once_with(7, requeue=False)
    channel.basic_ack.assert_not_called()


@pytest.mark.parametrize("value", ["10", "0", str(10**9), "lots"])
def test_max_body_bytes_is_range_checked_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BACKLANE_BROKER__MAX_BODY_BYTES", value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "max_body_bytes" in str(raised.value).lower()


def test_a_reason_full_of_control_characters_stays_within_its_bound() -> None:
    """Hypothesis found it: cut first and escaped after, 500 control characters became 2,000."""
    from backlane.messaging.intake import readable

    reason = readable("\x01" * 2000)
    assert len(reason) <= MAX_REASON_CHARS + 40 and reason.isprintable(), len(reason)
