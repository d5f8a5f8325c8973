"""Messages backlane sends *as a MassTransit publisher would*: the envelope, field for field.

MassTransit's ``SystemTextJsonMessageSerializer`` writes a ``JsonMessageEnvelope`` with its
options (camelCase, ``WriteIndented``, ``UnsafeRelaxedJsonEscaping``, and no ignore condition:
a field without a value is written as ``null``), in the envelope's declaration order:
messageId, requestId, correlationId, conversationId, initiatorId, sourceAddress,
destinationAddress, responseAddress, faultAddress, messageType, message, expirationTime,
sentTime, headers, host. Its RabbitMQ transport publishes it with ``content_type``
``application/vnd.masstransit+json``, persistent, the message id (and correlation id) as AMQP
properties and the send context's headers as AMQP headers. Both the faults
(:mod:`backlane.messaging.masstransit_faults`) and the orders' publish-only mode write through
:func:`envelope_bytes`, so the one format is held by one set of tests.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backlane.messaging.conversation import ADDRESS_PREFIX
from backlane.messaging.masstransit import ENVELOPE_CONTENT_TYPE


def json_datetime(moment: datetime) -> str:
    """A UTC time as System.Text.Json writes a ``DateTime`` of kind Utc: seconds, then up to 7
    fractional digits with trailing zeros trimmed, then ``Z``."""
    moment = moment.astimezone(UTC)
    fraction = f"{moment.microsecond:06d}0".rstrip("0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}Z"


def round_trip(moment: datetime) -> str:
    """``DateTime.ToString("O")`` of a UTC time: always 7 fractional digits."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def write_json(document: Any) -> bytes:
    """System.Text.Json with MassTransit's options: indented by two spaces, ``": "``, non-ASCII
    as it is (UnsafeRelaxedJsonEscaping), nulls written."""
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


@dataclass(frozen=True)
class HostInfo:
    """MassTransit's ``HostInfo`` for this process (``BusHostInfo``'s fields, in its order)."""

    machine_name: str
    process_name: str
    process_id: int
    assembly: str
    assembly_version: str
    framework_version: str
    mass_transit_version: str | None
    operating_system_version: str

    def document(self) -> dict[str, Any]:
        return {
            "machineName": self.machine_name,
            "processName": self.process_name,
            "processId": self.process_id,
            "assembly": self.assembly,
            "assemblyVersion": self.assembly_version,
            "frameworkVersion": self.framework_version,
            "massTransitVersion": self.mass_transit_version,
            "operatingSystemVersion": self.operating_system_version,
        }

    def headers(self) -> dict[str, Any]:
        """``SetHostHeaders`` (the transport adapter's form: the process id a number)."""
        return {
            "MT-Host-MachineName": self.machine_name,
            "MT-Host-ProcessName": self.process_name,
            "MT-Host-ProcessId": self.process_id,
            "MT-Host-Assembly": self.assembly,
            "MT-Host-AssemblyVersion": self.assembly_version,
            **({"MT-Host-MassTransitVersion": self.mass_transit_version} if self.mass_transit_version else {}),
            "MT-Host-FrameworkVersion": self.framework_version,
            "MT-Host-OperatingSystemVersion": self.operating_system_version,
        }


@functools.cache
def this_host() -> HostInfo:
    """This process: no MassTransit in it, so ``massTransitVersion`` is null."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        backlane_version = version("backlane")
    except PackageNotFoundError:
        backlane_version = "0.0.0"
    return HostInfo(
        machine_name=socket.gethostname(),
        process_name=os.path.basename(sys.argv[0] or "python") or "python",
        process_id=os.getpid(),
        assembly="backlane",
        assembly_version=backlane_version,
        framework_version=f"Python {platform.python_version()}",
        mass_transit_version=None,
        operating_system_version=f"{platform.system()} {platform.release()}",
    )


def address(name: str) -> str:
    """An exchange's MassTransit address (``rabbitmq://localhost/name``)."""
    return f"{ADDRESS_PREFIX}{name}"


def envelope_bytes(
    message: Any,
    message_types: list[str],
    *,
    message_id: str,
    conversation_id: str,
    source_address: str | None,
    destination_address: str,
    sent: datetime,
    host: HostInfo,
    request_id: str | None = None,
    correlation_id: str | None = None,
    initiator_id: str | None = None,
    headers: dict[str, Any] | None = None,
) -> bytes:
    """``JsonMessageEnvelope`` as MassTransit serializes it (see the module's docstring)."""
    return write_json(
        {
            "messageId": message_id,
            "requestId": request_id,
            "correlationId": correlation_id,
            "conversationId": conversation_id,
            "initiatorId": initiator_id,
            "sourceAddress": source_address,
            "destinationAddress": destination_address,
            "responseAddress": None,
            "faultAddress": None,
            "messageType": message_types,
            "message": message,
            "expirationTime": None,
            "sentTime": json_datetime(sent),
            "headers": dict(headers or {}),
            "host": host.document(),
        }
    )


def amqp_properties(
    message_id: str, headers: dict[str, Any] | None = None, correlation_id: str | None = None
) -> dict[str, Any]:
    """The AMQP properties MassTransit's RabbitMQ transport sets (pika's names)."""
    properties: dict[str, Any] = {
        "content_type": ENVELOPE_CONTENT_TYPE,
        "delivery_mode": 2,
        "message_id": message_id,
        "headers": dict(headers or {}),
    }
    if correlation_id:
        properties["correlation_id"] = correlation_id
    return properties


def published(
    message: Any,
    message_type: str,
    *,
    message_id: str,
    conversation_id: str,
    source_address: str,
    sent: datetime,
    host: HostInfo,
) -> tuple[dict[str, Any], bytes]:
    """``IPublishEndpoint.Publish(message)`` of a ``Namespace:TypeName`` message: its AMQP
    properties and bytes, to the exchange named ``message_type``."""
    body = envelope_bytes(
        message,
        [f"urn:message:{message_type}"],
        message_id=message_id,
        conversation_id=conversation_id,
        source_address=source_address,
        destination_address=address(message_type),
        sent=sent,
        host=host,
    )
    return amqp_properties(message_id), body


def declare_exchange(broker: Any, exchange: str) -> None:
    """A message type's exchange as MassTransit declares it: fanout, durable."""
    broker.with_reconnect(
        lambda: broker.channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True),
        f"declare exchange {exchange}",
    )


def publish(
    broker: Any,
    message_type: str,
    messages: list[Any],
    *,
    source_address: str,
    sent: datetime,
    ids: Any = None,
) -> list[str]:
    """Publish ``messages`` as MassTransit would, persistent, in one confirmed batch (an unroutable
    one, nothing bound to the exchange, is an error, never a silent drop); returns their ids.
    ``ids`` yields the message and conversation ids (default: random GUIDs)."""
    import uuid

    from backlane.messaging.publishing import Outgoing

    next_id = ids or (lambda: str(uuid.uuid4()))
    host = this_host()
    batch, sent_ids = [], []
    for message in messages:
        message_id = next_id()
        properties, body = published(
            message,
            message_type,
            message_id=message_id,
            conversation_id=next_id(),
            source_address=source_address,
            sent=sent,
            host=host,
        )
        batch.append(Outgoing("", body, message_id, exchange=message_type, properties=properties))
        sent_ids.append(message_id)
    if batch:
        declare_exchange(broker, message_type)
        broker.publish(batch, redeclare=lambda: declare_exchange(broker, message_type))
    return sent_ids
