"""Fault<OrderCreated> as MassTransit writes it, held byte for byte (clock, ids and host fixed).

The expected bytes follow MassTransit's own source (MassTransit/MassTransit): FaultEvent<T> and
FaultExceptionInfo's properties in declaration order, JsonMessageEnvelope's fields in its order,
System.Text.Json with SystemTextJsonMessageSerializer's options (camelCase, WriteIndented,
UnsafeRelaxedJsonEscaping, no ignore condition: nulls written), MessageTypeCache<Fault<T>>'s URNs,
the RabbitMQ transport's exchange name for Fault<T> and its AMQP properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from dramatiq.message import Message

from backlane.errors import UnknownItem
from backlane.messaging import conversation, masstransit_send
from backlane.messaging.masstransit import MassTransitInbox
from backlane.messaging.masstransit_faults import Destination, build, destination, fault_exchange, named_entity
from backlane.messaging.masstransit_send import HostInfo, json_datetime, round_trip
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE, order_created_from_masstransit
from tests import docs
from tests.unit.test_masstransit import readme_envelope

PAGE = "docs/masstransit-faults.md"

INBOX = MassTransitInbox("orders_inbox", "order_created", ORDER_CREATED_MESSAGE_TYPE, order_created_from_masstransit)
HOST = HostInfo("worker-1", "dramatiq", 4242, "backlane", "0.1.0", "Python 3.11.2", None, "Linux 6.1.0-17-amd64")
NOW = datetime(2026, 12, 2, 10, 30, 5, 123450, tzinfo=UTC)

#: The whole body of the Fault<OrderCreated> for the envelope docs/interop.md shows, failed as
#: "does not exist" (a cause attached), published to the fault exchange.
EXPECTED_BODY = """{
  "messageId": "5c1d0000-0000-4000-8000-00000000f001",
  "requestId": null,
  "correlationId": null,
  "conversationId": "0a3b0000-5d8a-0015-2e11-08dc1f0b7a1f",
  "initiatorId": null,
  "sourceAddress": "rabbitmq://localhost/orders_inbox",
  "destinationAddress": "rabbitmq://localhost/MassTransit:Fault--SharedContracts:OrderCreated--",
  "responseAddress": null,
  "faultAddress": null,
  "messageType": [
    "urn:message:MassTransit:Fault[[SharedContracts:OrderCreated]]",
    "urn:message:MassTransit:Fault"
  ],
  "message": {
    "faultId": "5c1d0000-0000-4000-8000-00000000fa17",
    "faultedMessageId": "0a3b0000-5d8a-0015-2d49-08dc1f0b7a1f",
    "timestamp": "2026-12-02T10:30:05.12345Z",
    "exceptions": [
      {
        "exceptionType": "backlane.errors.UnknownItem",
        "innerException": {
          "exceptionType": "LookupError",
          "innerException": null,
          "stackTrace": "",
          "message": "no row — réf 5f0c",
          "source": "backlane",
          "data": null
        },
        "stackTrace": "",
        "message": "order with request id '5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41' does not exist",
        "source": "backlane",
        "data": null
      }
    ],
    "host": {
      "machineName": "worker-1",
      "processName": "dramatiq",
      "processId": 4242,
      "assembly": "backlane",
      "assemblyVersion": "0.1.0",
      "frameworkVersion": "Python 3.11.2",
      "massTransitVersion": null,
      "operatingSystemVersion": "Linux 6.1.0-17-amd64"
    },
    "faultMessageTypes": [
      "urn:message:SharedContracts:OrderCreated"
    ],
    "message": {
      "requestId": "5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41",
      "customer": "customer-7",
      "items": [
        {
          "sku": "SKU-1",
          "quantity": 2
        }
      ]
    }
  },
  "expirationTime": null,
  "sentTime": "2026-12-02T10:30:05.12345Z",
  "headers": {
    "MT-Fault-RetryCount": 3
  },
  "host": {
    "machineName": "worker-1",
    "processName": "dramatiq",
    "processId": 4242,
    "assembly": "backlane",
    "assemblyVersion": "0.1.0",
    "frameworkVersion": "Python 3.11.2",
    "massTransitVersion": null,
    "operatingSystemVersion": "Linux 6.1.0-17-amd64"
  }
}"""

EXPECTED_PROPERTIES = {
    "content_type": "application/vnd.masstransit+json",
    "delivery_mode": 2,
    "message_id": "5c1d0000-0000-4000-8000-00000000f001",
    "headers": {
        "MT-Fault-RetryCount": 3,
        "MT-Reason": "fault",
        "MT-Fault-ExceptionType": "backlane.errors.UnknownItem",
        "MT-Fault-InputAddress": "rabbitmq://localhost/orders_inbox",
        "MT-Fault-Message": "order with request id '5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41' does not exist",
        "MT-Fault-Timestamp": "2026-12-02T10:30:05.1234500Z",
        "MT-Fault-StackTrace": "",
        "MT-Fault-ConsumerType": "process_orders",
        "MT-Fault-MessageType": "urn:message:SharedContracts:OrderCreated",
        "MT-Host-MachineName": "worker-1",
        "MT-Host-ProcessName": "dramatiq",
        "MT-Host-ProcessId": 4242,
        "MT-Host-Assembly": "backlane",
        "MT-Host-AssemblyVersion": "0.1.0",
        "MT-Host-FrameworkVersion": "Python 3.11.2",
        "MT-Host-OperatingSystemVersion": "Linux 6.1.0-17-amd64",
    },
}


def props(content_type: str, **headers: Any) -> SimpleNamespace:
    return SimpleNamespace(content_type=content_type, message_id="amqp-id", headers=headers)


def origin_of(body: bytes, content_type: str = "application/vnd.masstransit+json", **headers: Any) -> dict[str, Any]:
    message = INBOX.adapt(props(content_type, **headers), body)
    assert isinstance(message, Message)
    found = conversation.of_message(message)
    assert found is not None
    return found


def reason_and_error() -> tuple[str, UnknownItem]:
    reason = "order with request id '5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41' does not exist"
    error = UnknownItem(reason)
    error.__cause__ = LookupError("no row — réf 5f0c")
    return reason, error


def never_owned(name: str) -> bool:
    return False


def test_the_fault_of_the_documented_envelope_is_held_byte_for_byte() -> None:
    found = origin_of(readme_envelope())
    target = destination(found, ORDER_CREATED_MESSAGE_TYPE, never_owned)
    assert target == Destination(
        "MassTransit:Fault--SharedContracts:OrderCreated--",
        "rabbitmq://localhost/MassTransit:Fault--SharedContracts:OrderCreated--",
    )
    reason, error = reason_and_error()
    fault = build(
        found,
        ORDER_CREATED_MESSAGE_TYPE,
        target=target,
        exception=error,
        reason=reason,
        retry_count=3,
        fault_id="5c1d0000-0000-4000-8000-00000000fa17",
        message_id="5c1d0000-0000-4000-8000-00000000f001",
        now=NOW,
        host=HOST,
        consumer="process_orders",
    )
    assert fault.exchange == "MassTransit:Fault--SharedContracts:OrderCreated--"
    assert fault.body.decode() == EXPECTED_BODY
    assert fault.body == EXPECTED_BODY.encode("utf-8")
    assert fault.properties == EXPECTED_PROPERTIES
    assert list(fault.properties["headers"]) == list(EXPECTED_PROPERTIES["headers"])  # type: ignore[call-overload]


def test_the_conversation_is_transferred_as_masstransit_does() -> None:
    """TransferConsumeContextHeaders: the conversation id kept, the initiator is the correlation
    id (else the request id), the source the consuming queue, application headers carried on,
    MassTransit's own (MT-*) not; FaultPipe copies the correlation and request ids."""
    body = (
        readme_envelope()
        .replace(
            b'"messageType"',
            b'"requestId": "11111111-2222-4333-8444-555555555555",\n'
            b'  "correlationId": "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",\n'
            b'  "messageType"',
        )
        .replace(b'"headers": {}', b'"headers": {"Tenant": "eu-1", "MT-Activity-Id": "x", "Bad": {"a": 1}}')
    )
    found = origin_of(body)
    assert conversation.transferred(found) == {
        "conversation_id": "0a3b0000-5d8a-0015-2e11-08dc1f0b7a1f",
        "initiator_id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "source_address": "rabbitmq://localhost/orders_inbox",
        "headers": {"Tenant": "eu-1"},
    }
    reason, error = reason_and_error()
    fault = build(
        found,
        ORDER_CREATED_MESSAGE_TYPE,
        target=destination(found, ORDER_CREATED_MESSAGE_TYPE, never_owned),
        exception=error,
        reason=reason,
        retry_count=0,
        fault_id="5c1d0000-0000-4000-8000-00000000fa17",
        message_id="5c1d0000-0000-4000-8000-00000000f001",
        now=NOW,
        host=HOST,
        consumer="order_created",
    )
    text = fault.body.decode()
    assert '"requestId": "11111111-2222-4333-8444-555555555555",' in text
    assert '"correlationId": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",' in text
    assert '"initiatorId": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",' in text
    assert '"headers": {\n    "Tenant": "eu-1"\n  },' in text  # no MT-Fault-RetryCount without a retry
    assert fault.properties["correlation_id"] == "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    assert fault.properties["headers"]["Tenant"] == "eu-1"


def test_raw_json_takes_its_ids_from_the_transport_headers() -> None:
    found = origin_of(
        b'{"requestId": "r-1"}',
        "application/json",
        **{
            "MessageId": "0a3b0000-5d8a-0015-2d49-08dc1f0b7a1f",
            "MT-MessageType": "urn:message:SharedContracts:OrderCreated",
            "ConversationId": "0a3b0000-5d8a-0015-2e11-08dc1f0b7a1f",
            "MT-Fault-Address": "rabbitmq://shop01/orders-faults",
            "Content-Type": "application/json",
        },
    )
    assert found["conversation_id"] == "0a3b0000-5d8a-0015-2e11-08dc1f0b7a1f"
    assert found["fault_address"] == "rabbitmq://shop01/orders-faults"
    assert "headers" not in found, "the raw serializer's own headers are not application headers"


@pytest.mark.parametrize(
    ("fault_address", "response_address", "exchange", "refused"),
    [
        ("rabbitmq://shop01/orders-faults", None, "orders-faults", None),
        ("rabbitmq://shop01:5672/prod/orders-faults?durable=true", None, "orders-faults", None),
        ("exchange:orders-faults", None, "orders-faults", None),
        (None, "rabbitmq://shop01/shop01_OrdersApi_bus_x?temporary=true", "shop01_OrdersApi_bus_x", None),
        ("rabbitmq://shop01/orders_inbox", None, None, "which is backlane's"),
        ("rabbitmq://shop01/orders.XQ", None, None, "which is backlane's"),
        ("rabbitmq://shop01/SharedContracts:OrderCreated", None, None, "which is backlane's"),
        ("rabbitmq://shop01/amq.direct", None, None, "not an exchange"),
        ("rabbitmq://shop01/", None, None, "is not a RabbitMQ address"),
        ("queue:orders_inbox", None, None, "is not a RabbitMQ address"),
        ("http://evil.example/x", "rabbitmq://shop01/fine", None, "is not a RabbitMQ address"),
        ("rabbitmq://shop01/has%20space", None, None, "not an exchange"),
    ],
)
def test_fault_and_response_addresses_are_honoured_only_when_safe(
    fault_address: str | None, response_address: str | None, exchange: str | None, refused: str | None
) -> None:
    found = {"fault_address": fault_address, "response_address": response_address}
    owned = {"orders_inbox", "orders_inbox.XQ", "orders", "orders.XQ", "SharedContracts:OrderCreated"}
    target = destination(found, ORDER_CREATED_MESSAGE_TYPE, owned.__contains__)
    if refused is None:
        assert (target.exchange, target.refused) == (exchange, None)
        assert target.address == (fault_address or response_address)
    else:
        assert target.exchange == fault_exchange(ORDER_CREATED_MESSAGE_TYPE)
        assert target.refused is not None and refused in target.refused


def test_times_are_written_as_dotnet_writes_them() -> None:
    assert json_datetime(datetime(2024, 1, 26, 9, 14, 3, tzinfo=UTC)) == "2024-01-26T09:14:03Z"
    assert json_datetime(datetime(2024, 1, 26, 9, 14, 3, 120000, tzinfo=UTC)) == "2024-01-26T09:14:03.12Z"
    assert round_trip(datetime(2024, 1, 26, 9, 14, 3, tzinfo=UTC)) == "2024-01-26T09:14:03.0000000Z"
    assert named_entity("rabbitmq://h/vhost/name") == "name"


def test_the_page_shows_the_fault_byte_for_byte() -> None:
    assert docs.block(PAGE, "json", '"faultId": "5c1d0000-0000-4000-8000-00000000fa17"') == EXPECTED_BODY + "\n"
    shown = docs.block(PAGE, "json", '"MT-Reason": "fault"')
    assert json.loads(shown) == EXPECTED_PROPERTIES
    assert list(json.loads(shown)["headers"]) == list(EXPECTED_PROPERTIES["headers"])  # type: ignore[call-overload]


def test_publish_only_writes_order_created_as_the_page_shows_it() -> None:
    """What the orders discover publishes in publish-only mode (dispatch: masstransit_send.publish,
    from the discover queue), held against the page's example."""
    properties, body = masstransit_send.published(
        {"requestId": "5f0c6a52-1f0e-4c7e-9a55-0b8d3c1e2a41"},
        ORDER_CREATED_MESSAGE_TYPE,
        message_id="5c1d0000-0000-4000-8000-0000000000a1",
        conversation_id="5c1d0000-0000-4000-8000-0000000000c1",
        source_address=masstransit_send.address("discover"),
        sent=NOW,
        host=HOST,
    )
    shown = docs.block(PAGE, "json", '"destinationAddress": "rabbitmq://localhost/SharedContracts:OrderCreated"')
    assert body == (shown.removesuffix("\n")).encode("utf-8")
    assert properties == {
        "content_type": "application/vnd.masstransit+json",
        "delivery_mode": 2,
        "message_id": "5c1d0000-0000-4000-8000-0000000000a1",
        "headers": {},
    }


def test_only_guids_of_an_envelope_are_kept_beside_the_order() -> None:
    found = origin_of(
        readme_envelope().replace(
            b'"messageType"',
            b'"correlationId": "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",\n  "requestId": "<b>x</b>",\n  "messageType"',
        )
    )
    assert conversation.envelope_ids(found) == {
        "message_id": "0a3b0000-5d8a-0015-2d49-08dc1f0b7a1f",
        "conversation_id": "0a3b0000-5d8a-0015-2e11-08dc1f0b7a1f",
        "correlation_id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
    }
    forged = {"message_id": "<script>" + "x" * 5000, "conversation_id": 7, "correlation_id": b"\xff" * 36}
    assert conversation.envelope_ids(forged) == {}
    assert conversation.envelope_ids(None) == {}
