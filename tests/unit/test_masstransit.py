"""MassTransit's formats told apart and adapted, without a broker."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from dramatiq.message import Message

from backlane.messaging.masstransit import MassTransitInbox, envelope
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE, OrderCreatedByRequest, order_created_from_masstransit
from tests import docs

INBOX = MassTransitInbox("orders_inbox", "order_created", ORDER_CREATED_MESSAGE_TYPE, order_created_from_masstransit)


def props(content_type: str | None, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(content_type=content_type, message_id="amqp-id", headers=headers)


def readme_envelope() -> bytes:
    """The MassTransit envelope docs/interop.md shows under *The bytes*."""
    return docs.block("docs/interop.md", "json", '"messageType"', '"massTransitVersion"').encode()


def test_the_readme_envelope_becomes_an_order_created_v2() -> None:
    message = INBOX.adapt(props("application/vnd.masstransit+json"), readme_envelope())
    assert isinstance(message, Message)
    assert (message.queue_name, message.actor_name) == ("orders_inbox", "order_created")
    assert message.message_id == "0a3b0000-5d8a-0015-2d49-08dc1f0b7a1f"
    event = OrderCreatedByRequest.model_validate(message.args[0])
    assert event.request_id == "5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41" and event.has_content


def test_raw_json_and_dramatiq_envelopes_are_told_apart_by_content_type_and_body() -> None:
    raw = INBOX.adapt(
        props("application/json", **{"MT-MessageType": "urn:message:SharedContracts:OrderCreated"}),
        b'{"RequestId": "r-1", "x": 1}',
    )
    assert isinstance(raw, Message) and raw.args[0] == {"version": 2, "request_id": "r-1"}
    dramatiq_body = b'{"queue_name": "orders_inbox", "actor_name": "order_created", "args": []}'
    assert INBOX.adapt(props("application/json"), dramatiq_body) is None
    assert INBOX.adapt(props(None), dramatiq_body) is None


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/plain", b"{}", "content type 'text/plain' is not accepted"),
        ("application/vnd.masstransit+json", b"{", "body is not valid JSON"),
        ("application/vnd.masstransit+json", b"[]", "must be a JSON object"),
        ("application/vnd.masstransit+json", b'{"message": {}}', "has no messageType"),
        (
            "application/vnd.masstransit+json",
            b'{"messageType": ["urn:message:SharedContracts:OrderCreated"]}',
            "has no message",
        ),
        (
            "application/vnd.masstransit+json",
            b'{"messageType": ["urn:message:A:B"], "message": {}}',
            "does not include",
        ),
        (
            "application/vnd.masstransit+json",
            b'{"messageType": ["urn:message:SharedContracts:OrderCreated"], "message": {}}',
            "no RequestId",
        ),
    ],
)
def test_malformed_messages_get_a_reason(content_type: str, body: bytes, reason: str) -> None:
    problem = INBOX.adapt(props(content_type), body)
    assert isinstance(problem, str) and reason in problem


def test_envelope_writes_what_adapt_reads() -> None:
    body = envelope({"requestId": "r-9"}, ORDER_CREATED_MESSAGE_TYPE, message_id="m-1")
    assert json.loads(body)["messageType"] == ["urn:message:SharedContracts:OrderCreated"]
    message = INBOX.adapt(props("application/vnd.masstransit+json"), body)
    assert isinstance(message, Message) and message.message_id == "m-1"
