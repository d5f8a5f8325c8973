"""MassTransit's wire format and publish topology, so .NET services publish unchanged.

A MassTransit (v8) publisher on RabbitMQ sends a message of type ``Namespace.TypeName``
to a durable fanout exchange named ``Namespace:TypeName``. An inbox that accepts it
(:class:`MassTransitInbox`) has that exchange declared and bound to its queue, so a
publish made before any backlane worker ran is kept.

The consumer tells the formats apart by the AMQP content type, then the body:

* ``application/vnd.masstransit+json``: MassTransit's envelope (System.Text.Json,
  camelCase, null fields left out): ``messageId``, ``conversationId``, ``sourceAddress``,
  ``destinationAddress``, ``messageType`` (``urn:message:Namespace:TypeName`` URNs),
  ``message``, ``sentTime``, ``headers``, ``host``; optional ``requestId``,
  ``correlationId``, ``initiatorId``, ``responseAddress``, ``faultAddress``,
  ``expirationTime``. Only ``message`` and ``messageType`` are required here;
* ``application/json``: MassTransit's raw JSON, the message alone (its type, when sent,
  in the ``MT-MessageType`` header, ``;``-separated URNs) -- unless the body is a
  Dramatiq envelope (an object with ``actor_name``), which stays one;
* no content type: backlane's own Dramatiq envelope, as before;
* anything else (XML, BSON, text…): dead-lettered with the content type named.

A MassTransit message becomes a Dramatiq message for the inbox's actor whose single
argument is what ``convert`` makes of the ``message``; a problem becomes the reason
of a dead letter. The publisher's trace context (``traceparent``, else MassTransit's
``MT-Activity-Id``, from the AMQP headers or the envelope's ``headers``) goes into the
message's options (:mod:`backlane.observability.carrier`). The same envelope is what
:func:`envelope` writes for the events backlane publishes to MassTransit consumers.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dramatiq.message import Message

from backlane.messaging import conversation
from backlane.messaging.intake import NotJSON, id_problem, json_type, read_json
from backlane.observability import carrier

#: Content type of MassTransit's JSON envelope.
ENVELOPE_CONTENT_TYPE = "application/vnd.masstransit+json"
#: Content type of MassTransit's raw JSON (the message alone).
RAW_JSON_CONTENT_TYPE = "application/json"
#: Transport header naming a raw message's types (``;``-separated URNs).
MESSAGE_TYPE_HEADER = "MT-MessageType"
#: Message option recording where a Dramatiq message came from.
ORIGIN_OPTION = "masstransit"


def urn(message_type: str) -> str:
    """``Namespace:TypeName`` → ``urn:message:Namespace:TypeName``."""
    return f"urn:message:{message_type}"


@dataclass(frozen=True)
class MassTransitInbox:
    """An inbox queue that also takes MassTransit's ``message_type`` (``Namespace:TypeName``)."""

    queue: str
    actor_name: str
    message_type: str
    #: The MassTransit ``message`` → the actor's single argument; raises ValueError with a reason.
    convert: Callable[[Any], Any]
    #: False: the exchange is not bound to the queue, and a binding an earlier run made is removed
    #: (the pipeline publishes this type for another consumer; what is queued is still read).
    #: Asked at each declare (the settings are read live); None: always bound.
    bind: Callable[[], bool] | None = None

    @property
    def exchange(self) -> str:
        return self.message_type

    def declare(self, channel: Any) -> None:
        """The exchange MassTransit publishes to (same arguments as MassTransit's, so both may
        declare it), bound to the inbox queue."""
        channel.exchange_declare(exchange=self.exchange, exchange_type="fanout", durable=True, auto_delete=False)
        if self.bind is None or self.bind():
            channel.queue_bind(queue=self.queue, exchange=self.exchange, routing_key="")
        else:
            channel.queue_unbind(queue=self.queue, exchange=self.exchange, routing_key="")

    def adapt(self, properties: Any, body: bytes) -> Message | str | None:
        """The delivery as a Dramatiq message for the inbox actor; a reason to dead-letter it;
        or None when it is a Dramatiq envelope already."""
        declared = getattr(properties, "content_type", None)
        if declared is not None and not isinstance(declared, str):
            return "the content type must be text"
        content_type = (declared or "").split(";")[0].strip().lower()
        if not content_type:
            return None
        if content_type not in (ENVELOPE_CONTENT_TYPE, RAW_JSON_CONTENT_TYPE):
            return (
                f"content type {cut_text(content_type, 100)!r} is not accepted on {self.queue!r}: send "
                f"{ENVELOPE_CONTENT_TYPE!r} (MassTransit's envelope), {RAW_JSON_CONTENT_TYPE!r} "
                "(MassTransit's raw JSON) or a Dramatiq envelope without a content type"
            )
        try:
            document = read_json(body, "body")
        except NotJSON as exc:
            return f"{exc}; content type {content_type}"
        headers = getattr(properties, "headers", None)
        headers = headers if isinstance(headers, dict) else {}
        if content_type == RAW_JSON_CONTENT_TYPE:
            if isinstance(document, dict) and "actor_name" in document:
                return None  # a Dramatiq envelope sent with a JSON content type
            types = _header_types(headers.get(MESSAGE_TYPE_HEADER))
            message_id = getattr(properties, "message_id", None) or _text(headers.get("MessageId"))
            if message_id is not None and id_problem(message_id, "MessageId") is not None:
                return str(id_problem(message_id, "the MessageId header"))
            content = document
            carried = carrier.from_headers(headers)
            envelope_fields: dict[str, Any] | None = None
        else:
            if not isinstance(document, dict):
                return f"a MassTransit envelope must be a JSON object, got {json_type(document)}"
            types = document.get("messageType")
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                return "the MassTransit envelope has no messageType list of urn:message:Namespace:Type URNs"
            if "message" not in document:
                return "the MassTransit envelope has no message"
            if document.get("messageId") is not None:
                problem = id_problem(document.get("messageId"), "the MassTransit envelope's messageId")
                if problem is not None:
                    return problem
            message_id = _text(document.get("messageId")) or getattr(properties, "message_id", None)
            content = document["message"]
            carried = carrier.from_headers(headers, document.get("headers"))
            envelope_fields = document
        if types is not None and urn(self.message_type) not in types:
            return (
                f"messageType {cut_list(types)} does not include {urn(self.message_type)}: "
                f"only {self.message_type} is consumed on {self.queue!r}"
            )
        try:
            argument = self.convert(content)
        except ValueError as exc:
            return cut_text(str(exc))
        except Exception:  # a convert written for well-formed messages (keys of other types…)
            return f"the message cannot be read as {self.message_type}: its fields have unexpected types"
        fields: dict[str, Any] = {
            "queue_name": self.queue,
            "actor_name": self.actor_name,
            "args": (argument,),
            "kwargs": {},
            "options": {
                ORIGIN_OPTION: conversation.origin(
                    queue=self.queue,
                    content_type=content_type,
                    message_id=message_id,
                    message_types=types,
                    message=content,
                    envelope=envelope_fields,
                    transport_headers=headers,
                    consumed_type=self.message_type,
                ),
                **carried,
            },
        }
        if message_id:
            fields["message_id"] = message_id
        return Message(**fields)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) and value else None


def _header_types(value: Any) -> list[str] | None:
    text = _text(value)
    return None if text is None else [t.strip() for t in text.split(";") if t.strip()]


def cut_text(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


def cut_list(types: list[str], limit: int = 5) -> str:
    shown = ", ".join(t[:200] for t in types[:limit]) or "(empty)"
    return f"[{shown}{', …' if len(types) > limit else ''}]"


def envelope(
    message: dict[str, Any],
    message_type: str,
    *,
    message_id: str | None = None,
    source_address: str = "rabbitmq://localhost/backlane",
    conversation: dict[str, Any] | None = None,
) -> bytes:
    """``message`` in MassTransit's JSON envelope, as its System.Text.Json serializer writes it
    (camelCase, nulls left out), published to the exchange named ``message_type``.

    ``conversation`` (:func:`backlane.messaging.conversation.transferred`): sent on behalf of a
    consumed MassTransit message, it carries that message's conversation id, its initiator id,
    the consuming queue's address as source and its application headers."""
    carried = conversation or {}
    document: dict[str, Any] = {
        "messageId": message_id or str(uuid.uuid4()),
        "conversationId": carried.get("conversation_id") or str(uuid.uuid4()),
    }
    if carried.get("initiator_id"):
        document["initiatorId"] = carried["initiator_id"]
    document.update(
        {
            "sourceAddress": carried.get("source_address") or source_address,
            "destinationAddress": f"rabbitmq://localhost/{message_type}",
            "messageType": [urn(message_type)],
            "message": message,
            "sentTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "headers": dict(carried.get("headers") or {}),
            "host": {
                "machineName": socket.gethostname(),
                "processName": "backlane",
                "processId": os.getpid(),
                "assembly": "backlane",
                "frameworkVersion": "python",
            },
        }
    )
    return json.dumps(document, indent=2).encode()
