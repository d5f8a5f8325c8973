"""The dead-letter codec and parser, over any body and any property table (hypothesis).

The round trip (refused delivery -> letter -> what requeue publishes) must give back the
original body and properties exactly, whatever the publisher sent, also after the letter
crossed the wire (pika's encoder and decoder) and RabbitMQ added its own headers; the
parser must show any .XQ message without raising. Fixed budget by default (300 examples);
``BACKLANE_FUZZ_PROFILE=long scripts/test tests/unit/test_letter_codec.py -q`` for 20,000."""

from __future__ import annotations

import json
import os
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pika import spec

from backlane.messaging import letters
from backlane.messaging.publishing import InvalidOutgoing, Outgoing, problem_of
from backlane.operations import dead_letters as admin

#: 300 examples per property in CI; BACKLANE_FUZZ_PROFILE=long (as test_intake_fuzz.py) or
#: BACKLANE_FUZZ_EXAMPLES=N for a longer run by hand.
LONG = os.environ.get("BACKLANE_FUZZ_PROFILE") == "long"
EXAMPLES = int(os.environ.get("BACKLANE_FUZZ_EXAMPLES", "20000" if LONG else "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shortstr = st.text(max_size=40).filter(letters.is_shortstr)
# Header names as pika decodes them; some collide with the names a letter reserves.
header_name = st.one_of(
    shortstr,
    st.sampled_from(["x-death", "x-delivery-count", "x-backlane-kind", "x-backlane-shadowed", "x-first-death-queue"]),
)
# Values that survive pika's table encoding as they are (str, int, bool, nested tables, lists).
scalar = st.one_of(
    st.text(max_size=30).filter(letters.is_shortstr),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.booleans(),
)
value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(shortstr, inner, max_size=3)),
    max_leaves=8,
)
headers = st.one_of(st.none(), st.dictionaries(header_name, value, max_size=6))
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": shortstr,
        "content_encoding": shortstr,
        "headers": headers,
        "delivery_mode": st.sampled_from([1, 2]),
        "priority": st.integers(min_value=0, max_value=9),
        "correlation_id": shortstr,
        "reply_to": shortstr,
        "expiration": st.integers(min_value=1, max_value=10**9).map(str),
        "message_id": shortstr,
        "timestamp": st.integers(min_value=0, max_value=2**40),
        "type": shortstr,
        "user_id": shortstr,
        "app_id": shortstr,
    },
).map(lambda p: {k: v for k, v in p.items() if v is not None})
annotation = letters.Annotation("malformed", "not a valid message envelope", "orders_inbox")


def wire(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` after pika encoded them and decoded them again, as a consumer reads them."""
    encoded = b"".join(pika.BasicProperties(**props).encode())
    decoded = spec.BasicProperties()
    decoded.decode(encoded)
    return letters.properties_of(decoded)


@fuzz
@given(body=st.binary(max_size=2048), props=properties)
def test_round_trip_is_exact_for_any_body_and_properties(body: bytes, props: dict[str, Any]) -> None:
    letter_body, letter_props = letters.encode(body, props, annotation)
    assert letter_body is body or letter_body == body
    assert letter_props["delivery_mode"] == 2 and "expiration" not in letter_props, "a letter is kept"
    assert letters.is_shortstr(letter_props["message_id"]), "a letter can always be named"
    assert letters.original(letter_props) == wire(props) == props


@fuzz
@given(body=st.binary(max_size=512), props=properties, count=st.integers(min_value=0, max_value=50))
def test_round_trip_is_exact_across_the_wire_and_rabbitmq_headers(
    body: bytes, props: dict[str, Any], count: int
) -> None:
    _, letter_props = letters.encode(body, props, annotation)
    read = wire(letter_props)
    read["headers"] = {**read["headers"], "x-delivery-count": count}  # a quorum .XQ redelivering it
    assert letters.original(read) == props
    assert problem_of(Outgoing("orders_inbox", body, "m", properties=letters.original(read))) is None


@fuzz
@given(
    raw=st.one_of(st.binary(max_size=4096), st.text(max_size=200).map(str.encode)),
    props=st.one_of(properties, st.none()),
)
def test_the_parser_is_total_for_any_body_and_properties(raw: bytes, props: dict[str, Any] | None) -> None:
    letter = admin.parse("orders_inbox", raw, props)
    row = admin.display_row(letter)
    json.dumps(row, default=str)
    assert isinstance(row["reason"], str) and len(row["reason"]) <= admin.FIELD_LIMIT + 40
    out = admin.requeue_outgoing(letter, b"k" * 32)
    assert out.routing_key == "orders_inbox"


@fuzz
@given(
    envelope=st.recursive(
        scalar | st.none(), lambda i: st.lists(i, max_size=3) | st.dictionaries(shortstr, i, max_size=4), max_leaves=12
    )
)
def test_the_parser_is_total_for_any_json(envelope: Any) -> None:
    raw = json.dumps(envelope).encode()
    for props in (None, {"headers": {letters.FORM: letters.ENVELOPE}}, {"headers": {letters.FORM: letters.ORIGINAL}}):
        letter = admin.parse("orders", raw, props)
        admin.display_row(letter)
        admin.requeue_outgoing(letter, b"k" * 32)


@pytest.mark.parametrize(
    "raw",
    [
        b"null",
        b"[1]",
        b'{"args":5}',
        b'{"actor_name":5}',
        b'{"actor_name":"x","options":null}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_the_letters_that_broke_list_are_shown(raw: bytes) -> None:
    row = admin.display_row(admin.parse("orders_inbox", raw, None))
    assert "NoneType" not in row["reason"] and "'args'" not in row["reason"]
    assert row["kind"] in ("foreign", "unknown")  # no reason recorded by backlane


def test_rabbitmqs_own_dead_letter_is_explained_and_requeued_without_its_headers() -> None:
    headers = {
        "x-death": [{"queue": "orders", "reason": "rejected", "count": 1}],
        "x-first-death-reason": "rejected",
        "x-first-death-queue": "orders",
        "trace": "t-1",
    }
    letter = admin.parse("orders", b"\xff\x00", {"headers": headers, "content_type": "application/octet-stream"})
    assert letter.reason == "dead-lettered by RabbitMQ: rejected by a consumer in orders"
    assert not letter.decodable
    assert "not UTF-8" in admin.display_row(letter)["item"]
    out = admin.requeue_outgoing(letter)
    assert out.body == b"\xff\x00" and out.properties == {
        "headers": {"trace": "t-1"},
        "content_type": "application/octet-stream",
    }


def test_a_letter_without_message_id_gets_one_that_requeue_removes() -> None:
    body, props = letters.encode(b"x", {"content_type": "text/plain"}, annotation, message_id="m" * 300)
    assert letters.is_shortstr(props["message_id"]) and props["message_id"].startswith("dead-letter-")
    letter = admin.parse("orders_inbox", body, props)
    assert letter.message_id == props["message_id"] and letter.form == "original"
    assert admin.requeue_outgoing(letter).properties == {"content_type": "text/plain"}


def test_older_letters_still_list_and_requeue() -> None:
    legacy_raw = {
        "queue_name": "orders_inbox",
        "actor_name": "<undecodable>",
        "args": [],
        "kwargs": {},
        "options": {
            "raw_body": "not json {",
            "content_type": "text/plain",
            "dead_letter": {"kind": "malformed", "reason": "bad", "retries": 0, "failed_at": "t"},
        },
    }
    letter = admin.parse("orders_inbox", json.dumps(legacy_raw).encode(), {"message_id": "old-1"})
    assert (letter.kind, letter.reason, letter.decodable) == ("malformed", "bad", False)
    out = admin.requeue_outgoing(letter)
    assert out.body == b"not json {" and out.properties["content_type"] == "text/plain"
    semantic = {
        "queue_name": "orders",
        "actor_name": "process_orders",
        "args": [7],
        "kwargs": {},
        "message_id": "m-7",
        "options": {"retries": 3, "dead_letter": {"kind": "permanent", "reason": "no", "retries": 3}},
    }
    letter = admin.parse("orders", json.dumps(semantic).encode(), None)
    assert (letter.item, letter.retries, letter.message_id) == (7, 3, "m-7")
    requeued = json.loads(admin.requeue_outgoing(letter, b"k" * 32).body)
    assert requeued["options"]["backlane_requeued"] is True and "dead_letter" not in requeued["options"]
    assert "backlane_signature" in requeued["options"], "backlane's options are honoured only when signed"


def test_field_lengths_are_checked_before_any_publish() -> None:
    assert "message_id" in (problem_of(Outgoing("q", b"", "m" * 256)) or "")
    assert "headers key" in (problem_of(Outgoing("q", b"", "m", headers={"k" * 256: 1})) or "")
    assert "headers.a key" in (problem_of(Outgoing("q", b"", "m", headers={"a": {"é" * 200: 1}})) or "")
    assert "content_type" in (problem_of(Outgoing("q", b"", "m", properties={"content_type": "t" * 300})) or "")
    assert problem_of(Outgoing("q", b"", "m" * 255, headers={"k" * 255: "v" * 10_000})) is None
    assert issubclass(InvalidOutgoing, ValueError)


def test_the_reason_is_bounded() -> None:
    _, props = letters.encode(b"", None, letters.Annotation("malformed", letters.bounded_reason("r" * 5_000_000), "q"))
    assert len(props["headers"][letters.REASON]) < letters.REASON_LIMIT + 40


def test_a_letter_whose_properties_cannot_be_sent_keeps_its_body_and_reason() -> None:
    from backlane.messaging.deadletter import publish_letter

    sent: list[Outgoing] = []

    class Broker:
        def publish(self, batch: list[Outgoing]) -> None:
            problem = problem_of(batch[0])
            if problem is not None:
                raise InvalidOutgoing(problem)
            sent.extend(batch)

    body, props = letters.encode(b"\xff", {"headers": {"k" * 300: 1}}, annotation)
    publish_letter(Broker(), "orders_inbox", body, props)  # type: ignore[arg-type]
    (out,) = sent
    assert out.body == b"\xff" and out.properties is not None
    assert out.properties["headers"][letters.REASON] == annotation.reason
    assert "properties-dropped" in " ".join(out.properties["headers"])
    assert letters.original(out.properties) == {"delivery_mode": 2}, "requeue sends the body alone, persistent"


def test_a_quorum_dead_letter_queue_has_no_delivery_limit_on_any_version() -> None:
    from backlane.messaging.broker import xq_arguments

    assert xq_arguments("quorum", 1000, 4)["x-delivery-limit"] == -1, "4.x: default 20, -1 turns it off"
    assert "x-delivery-limit" not in xq_arguments("quorum", 1000, 3), "3.x: none by default; -1 drops at once"
    assert "x-delivery-limit" not in xq_arguments("quorum", 1000, None)
    assert xq_arguments("classic", 1000, 4) == {"x-message-ttl": 1000}, "classic queues refuse the argument"
