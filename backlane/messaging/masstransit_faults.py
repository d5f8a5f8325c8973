"""``Fault<T>`` for a MassTransit message backlane failed for good, as MassTransit writes it.

When a MassTransit consumer throws, ``ConsumeContext.NotifyFaulted`` → ``GenerateFault`` builds a
``FaultEvent<T>`` (``MassTransit.Events``) and sends it to the message's ``FaultAddress``, else
its ``ResponseAddress``, else publishes it (``ConsumeContextEndpointExtensions.GetFaultEndpoint``);
its ``FaultPipe`` transfers the consumed message's conversation (``TransferConsumeContextHeaders``),
copies its correlation and request ids and sets ``MT-Fault-RetryCount``. backlane does the same for
an item whose message came in MassTransit's format (the ``masstransit`` option the adapter writes,
:mod:`backlane.messaging.conversation`), once its row says failed:

* the body: MassTransit's JSON envelope (System.Text.Json, camelCase, indented, relaxed escaping;
  MassTransit's options set no ignore condition, so absent fields are written as ``null``) with
  ``messageType`` ``[urn:message:MassTransit:Fault[[Ns:Type]], urn:message:MassTransit:Fault]``
  (``MessageTypeCache<Fault<T>>``: the type, then its ``Fault`` interface) and as ``message`` the
  ``FaultEvent<T>``: ``faultId``, ``faultedMessageId``, ``timestamp``, ``exceptions`` (one
  ``FaultExceptionInfo``: ``exceptionType``, ``innerException`` from ``__cause__``, ``stackTrace``
  and ``message`` cut at 2,048 characters as ``ExceptionUtil`` does, ``source``, ``data``),
  ``host``, ``faultMessageTypes`` (the consumed message's types) and ``message`` (the consumed
  message as it came);
* published to ``MassTransit:Fault--Ns:Type--`` (the RabbitMQ transport's name for ``Fault<T>``:
  ``DefaultMessageNameFormatter("::", "--", ":", "-")``), declared as MassTransit does (fanout,
  durable), or sent to the exchange its fault or response address names (see :func:`destination`);
* AMQP properties as MassTransit's RabbitMQ transport sets them (content type, persistent,
  message id, correlation id) and headers: the envelope's, plus the ``MT-Reason``, ``MT-Fault-*``
  and ``MT-Host-*`` headers MassTransit's error transport writes on the ``<queue>_error`` copy
  (``SetExceptionHeaders``, ``SetHostHeaders``): backlane keeps its dead letter in ``.XQ``,
  where a .NET operator does not look, so the fault carries them.

Exactly one fault per failed message: the fault is built once and kept in ``masstransit_faults``
(:class:`~backlane.db.models.MassTransitFault`), keyed by the faulted message's id, before it is
sent; a redelivery or a second worker failing the same message finds the row. A worker claims the
row with a lease to send it and marks it sent once RabbitMQ confirmed; a sender that died between
the confirm and the mark leaves a row another failure of the message sends again, with the same
message id, so a MassTransit inbox drops the copy.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from backlane.errors import TransientError
from backlane.messaging import conversation
from backlane.messaging.masstransit import urn
from backlane.messaging.masstransit_send import (
    HostInfo,
    amqp_properties,
    envelope_bytes,
    json_datetime,
    round_trip,
    this_host,
)
from backlane.messaging.masstransit_send import address as address_of

logger = logging.getLogger("backlane.masstransit")

#: The URN of MassTransit's non-generic ``Fault`` interface, which every ``Fault<T>`` carries too.
FAULT_URN = "urn:message:MassTransit:Fault"
#: ``ExceptionUtil`` cuts a fault's message and stack trace at this many characters.
TEXT_LIMIT = 2048
#: How long a worker holds a fault row while it sends it.
SEND_LEASE = timedelta(seconds=60)
#: A fault or response address backlane sends to: MassTransit's RabbitMQ address forms.
ADDRESS_SCHEMES = ("rabbitmq", "rabbitmqs", "exchange")
#: An entity name MassTransit's RabbitMQ transport accepts (EntityNameValidator).
ENTITY_NAME = re.compile(r"^[A-Za-z0-9\-_.:]{1,255}$")


def fault_exchange(message_type: str) -> str:
    """``Ns:Type`` → ``MassTransit:Fault--Ns:Type--``."""
    return f"MassTransit:Fault--{message_type}--"


def fault_types(message_type: str) -> list[str]:
    """``MessageTypeCache<Fault<Ns.Type>>.MessageTypeNames``."""
    return [f"urn:message:MassTransit:Fault[[{message_type}]]", FAULT_URN]


def _cut(text: str) -> str:
    return text[:TEXT_LIMIT]


def type_name(exc: BaseException) -> str:
    """``TypeCache.GetShortName``: the type's full name (module and class here)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def stack_trace(exc: BaseException | None) -> str:
    if exc is None or exc.__traceback__ is None:
        return ""
    return _cut("".join(traceback.format_tb(exc.__traceback__)).rstrip("\n"))


def exception_info(exc: BaseException | None, message: str, depth: int = 0) -> dict[str, Any]:
    """``FaultExceptionInfo``: the failure as backlane classified it (``message`` is its reason),
    its cause as ``innerException`` (at most 5 deep)."""
    cause = exc.__cause__ if exc is not None else None
    inner = exception_info(cause, str(cause), depth + 1) if cause is not None and depth < 4 else None
    return {
        "exceptionType": type_name(exc) if exc is not None else "backlane.errors.FinalFailure",
        "innerException": inner,
        "stackTrace": stack_trace(exc),
        "message": _cut(message),
        "source": "backlane",
        "data": None,
    }


@dataclass(frozen=True)
class Fault:
    exchange: str
    destination_address: str
    #: pika.BasicProperties' names.
    properties: dict[str, Any]
    body: bytes


@dataclass(frozen=True)
class Destination:
    exchange: str
    address: str
    #: Why the envelope's fault or response address was not used (None: it was, or there was none).
    refused: str | None = None


def named_entity(address: str) -> str | None:
    """The exchange a MassTransit RabbitMQ address names: ``rabbitmq://host[:port]/[vhost/]name[?…]``
    or ``exchange:name``; None for any other form."""
    try:
        parts = urlsplit(address)
    except ValueError:
        return None
    if parts.scheme.lower() not in ADDRESS_SCHEMES:
        return None
    path = parts.path if parts.scheme.lower() != "exchange" else parts.path or parts.netloc
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path else ""
    return name or None


def destination(found: dict[str, Any], message_type: str, owned: Callable[[str], bool]) -> Destination:
    """Where the fault goes: the fault address, else the response address, else the fault exchange.

    An address is honoured only when it names an exchange in MassTransit's address forms
    (``rabbitmq://…/name``, ``exchange:name``) that is a valid entity name, not one of RabbitMQ's
    (``amq.*``), not the default exchange and not a name backlane owns (``owned``: its queues,
    their ``.DQ``/``.XQ``, the exchanges it consumes from or publishes to), and that exists
    (checked before sending: backlane never creates an exchange a message named). Otherwise the
    fault is published to the fault exchange, with the reason logged: the .NET side still hears
    of the failure and no address in a message can make backlane write to its own queues."""
    publish = Destination(fault_exchange(message_type), address_of(fault_exchange(message_type)))
    for key in ("fault_address", "response_address"):
        address = found.get(key)
        if not address:
            continue
        name = named_entity(address)
        if name is None:
            return Destination(publish.exchange, publish.address, f"{key} {address[:200]!r} is not a RabbitMQ address")
        if not ENTITY_NAME.match(name) or name.startswith("amq."):
            return Destination(publish.exchange, publish.address, f"{key} names {name[:200]!r}, not an exchange")
        if owned(name):
            return Destination(publish.exchange, publish.address, f"{key} names {name!r}, which is backlane's")
        return Destination(name, address)
    return publish


def build(
    found: dict[str, Any],
    message_type: str,
    *,
    target: Destination,
    exception: BaseException | None,
    reason: str,
    retry_count: int,
    fault_id: str,
    message_id: str,
    now: datetime,
    host: HostInfo,
    consumer: str,
) -> Fault:
    """The fault's bytes and properties: everything that varies is an argument, so a test holds them."""
    transferred = conversation.transferred(found)
    headers: dict[str, Any] = dict(transferred["headers"])
    if retry_count > 0:
        headers["MT-Fault-RetryCount"] = retry_count
    event: dict[str, Any] = {
        "faultId": fault_id,
        "faultedMessageId": conversation.guid(found.get("message_id")),
        "timestamp": json_datetime(now),
        "exceptions": [exception_info(exception, reason)],
        "host": host.document(),
        "faultMessageTypes": list(found.get("message_type") or [urn(message_type)]),
        "message": found.get("message"),
    }
    body = envelope_bytes(
        event,
        fault_types(message_type),
        message_id=message_id,
        request_id=found.get("request_id"),
        correlation_id=found.get("correlation_id"),
        conversation_id=transferred.get("conversation_id") or str(uuid.uuid4()),
        initiator_id=transferred.get("initiator_id"),
        source_address=transferred.get("source_address"),
        destination_address=target.address,
        sent=now,
        host=host,
        headers=headers,
    )
    stack = event["exceptions"][0]["stackTrace"]
    transport = {
        **headers,
        "MT-Reason": "fault",
        "MT-Fault-ExceptionType": event["exceptions"][0]["exceptionType"],
        "MT-Fault-InputAddress": found.get("input_address") or "",
        "MT-Fault-Message": _cut(reason),
        "MT-Fault-Timestamp": round_trip(now),
        "MT-Fault-StackTrace": stack,
        "MT-Fault-ConsumerType": consumer,
        "MT-Fault-MessageType": urn(message_type),
        **host.headers(),
    }
    properties = amqp_properties(message_id, transport, found.get("correlation_id"))
    return Fault(target.exchange, target.address, properties, body)


def owned_names(broker: Any) -> Callable[[str], bool]:
    """Whether a name is one of backlane's: its declared queues (with their delay and dead-letter
    queues), the MassTransit exchanges it consumes from, and its event exchanges."""
    queues: set[str] = set()
    for name in list(getattr(broker, "queues", {}) or {}) + list(broker.get_declared_queues()):
        base = name.removesuffix(".DQ").removesuffix(".XQ")
        queues |= {base, f"{base}.DQ", f"{base}.XQ"}
    exchanges = {inbox.exchange for inbox in getattr(broker, "masstransit_inboxes", {}).values()}
    return lambda name: name in queues or name in exchanges or name.endswith(".recent")


class FaultOwed(TransientError):
    """Another worker is sending this message's fault right now: try again after its lease."""

    kind = "fault_owed"


def enabled(settings: Any) -> bool:
    return bool(getattr(getattr(settings, "messages", None), "masstransit_faults", True))


def notify_failed(
    runtime: Any,
    pipeline: str,
    item: Any,
    found: dict[str, Any],
    reason: str,
    exception: BaseException | None,
    retry_count: int,
    consumer: str,
) -> None:
    """Owe the .NET side one ``Fault<T>`` for ``found`` and send it (see the module's docstring).

    Raises when the database or the broker is unavailable, so the caller writes the failure
    again later; returns when the fault is sent, or was already."""
    from sqlalchemy import select, update

    from backlane.db.models.masstransit import MassTransitFault

    message_type = found.get("consumed_type")
    if not isinstance(message_type, str) or not enabled(runtime.settings):
        return
    broker, db = runtime.broker, runtime.database
    key = found.get("message_id") or f"{pipeline}:{item}"
    now = datetime.now(UTC)
    with db.transaction() as session:
        row = session.get(MassTransitFault, key)
        if row is None:
            target = checked(broker, destination(found, message_type, owned_names(broker)), message_type)
            if target.refused:
                logger.warning("MassTransit fault of %s sent to %s instead: %s", key, target.exchange, target.refused)
            fault = build(
                found,
                message_type,
                target=target,
                exception=exception,
                reason=reason,
                retry_count=retry_count,
                fault_id=str(uuid.uuid4()),
                message_id=str(uuid.uuid4()),
                now=now,
                host=this_host(),
                consumer=consumer,
            )
            insert = _insert(session)
            session.execute(
                insert(MassTransitFault)
                .values(
                    faulted_key=key,
                    pipeline=pipeline,
                    item_id=None if item is None else str(item)[:100],
                    exchange=fault.exchange,
                    properties=fault.properties,
                    body=fault.body,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["faulted_key"])
            )
    with db.transaction() as session:
        claimed = session.execute(
            update(MassTransitFault)
            .where(
                MassTransitFault.faulted_key == key,
                MassTransitFault.sent_at.is_(None),
                (MassTransitFault.lease_until.is_(None)) | (MassTransitFault.lease_until < now),
            )
            .values(lease_until=now + SEND_LEASE)
        ).rowcount
        row = session.scalars(select(MassTransitFault).where(MassTransitFault.faulted_key == key)).one()
        exchange, properties, body, sent = row.exchange, row.properties, row.body, row.sent_at
    if sent is not None:
        return
    if not claimed:
        raise FaultOwed(f"the MassTransit fault of {key} is being sent by another worker")
    try:
        send(broker, exchange, properties, body)
    except Exception:
        with db.transaction() as session:  # let the next try (this message's, or a redelivery's) send it
            released = update(MassTransitFault).where(MassTransitFault.faulted_key == key)
            session.execute(released.values(lease_until=None))
        raise
    with db.transaction() as session:
        session.execute(update(MassTransitFault).where(MassTransitFault.faulted_key == key).values(sent_at=now))
    logger.info("MassTransit fault of message %s published to %s", key, exchange)


def _insert(session: Any) -> Any:
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


#: The fault exchange's own bounded queue keeps the latest faults, as an event exchange's does
#: (backlane.messaging.events): with no .NET subscriber bound yet, a fault is kept, not dropped.
RECENT_FAULTS = 1000


def declare_fault_exchange(broker: Any, exchange: str) -> None:
    """The fault exchange as MassTransit declares it (fanout, durable), with ``<exchange>.recent``."""
    from backlane.messaging.events import EventTopology, declare

    declare(broker, EventTopology(exchange, f"{exchange}.recent", RECENT_FAULTS))


def checked(broker: Any, target: Destination, message_type: str) -> Destination:
    """``target`` when it is the fault exchange or an exchange that exists; else the fault exchange."""
    publish = fault_exchange(message_type)
    if target.exchange == publish:
        return target
    import pika
    import pika.exceptions

    try:
        connection = pika.BlockingConnection(broker.parameters)
    except pika.exceptions.AMQPError as exc:
        raise TransientError(f"cannot reach RabbitMQ to check the fault address: {exc!r}") from exc
    try:
        connection.channel().exchange_declare(exchange=target.exchange, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return Destination(
            publish,
            conversation.input_address(publish),
            f"exchange {target.exchange!r} does not exist ({exc.reply_code})",
        )
    finally:
        if connection.is_open:
            connection.close()
    return target


def send(broker: Any, exchange: str, properties: dict[str, Any], body: bytes) -> None:
    """Publish the fault, persistent and confirmed. The fault exchange is declared first (as
    MassTransit declares it); an address's exchange is never declared by backlane, and a fault
    it cannot route (nothing bound to it) goes to the fault exchange instead."""
    from backlane.messaging.publishing import Outgoing, UnroutableMessages

    message_id = str(properties.get("message_id"))
    if exchange.startswith("MassTransit:Fault--"):
        declare_fault_exchange(broker, exchange)
        out = Outgoing("", body, message_id, exchange=exchange, properties=properties)
        broker.publish([out], redeclare=lambda: declare_fault_exchange(broker, exchange))
        return
    try:
        broker.publish(
            [Outgoing("", body, message_id, exchange=exchange, properties=properties)], redeclare=lambda: None
        )
    except UnroutableMessages:
        types = json.loads(body).get("messageType") or [""]
        consumed = str(types[0]).removeprefix("urn:message:MassTransit:Fault[[").removesuffix("]]")
        logger.warning("MassTransit fault %s: nothing is bound to %r; published instead", message_id, exchange)
        send(broker, fault_exchange(consumed), properties, body)
