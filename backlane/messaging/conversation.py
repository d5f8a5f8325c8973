"""A consumed MassTransit message's context, and what backlane sends on its behalf carries of it.

The MassTransit adapter (:mod:`backlane.messaging.masstransit`) keeps, in the Dramatiq message's
``masstransit`` option, what a MassTransit ``ConsumeContext`` knows of the message: its ids
(messageId, conversationId, correlationId, requestId, initiatorId), its addresses (source,
response, fault), its message types, the message itself and its application headers. The
inbox hands the same option to the per-item message it sends (a signed message of backlane's,
so a sender cannot write it), and whatever backlane sends on that message's behalf — its
``Fault<T>`` (:mod:`backlane.messaging.masstransit_faults`), events in MassTransit's envelope
(:func:`backlane.messaging.events.publish_event`) — carries the conversation the way
MassTransit's ``SendContextExtensions.TransferConsumeContextHeaders`` does:

* ``conversationId``: the consumed message's;
* ``initiatorId``: its correlationId, else its requestId (MassTransit's rule; a message with
  neither starts nothing it could be traced back to, so none is written);
* ``sourceAddress``: the address of the queue it was consumed from;
* its headers, except MassTransit's own (``MT-*``).

Every field comes from another service: an id is kept only when it is a GUID (MassTransit's ids
are), an address only when it is short printable text, a header only with a short name and a
scalar value; anything else is dropped, never an error.
"""

from __future__ import annotations

import re
from typing import Any

#: The option the adapter writes (the same name as masstransit.ORIGIN_OPTION).
OPTION = "masstransit"
#: Where backlane's inbox queues are, in MassTransit's address form (the host is not known to a
#: worker: MassTransit ignores it when it matches its own connection).
ADDRESS_PREFIX = "rabbitmq://localhost/"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,1000}$")
#: Envelope field → option key; the raw serializer's transport header for the same thing.
IDS = {
    "conversationId": ("conversation_id", "ConversationId"),
    "correlationId": ("correlation_id", "CorrelationId"),
    "requestId": ("request_id", "RequestId"),
    "initiatorId": ("initiator_id", "MT-InitiatorId"),
}
ADDRESSES = {
    "sourceAddress": ("source_address", "MT-Source-Address"),
    "responseAddress": ("response_address", "MT-Response-Address"),
    "faultAddress": ("fault_address", "MT-Fault-Address"),
}
#: At most this many application headers are carried on, each name at most 200 characters.
MAX_HEADERS = 50


def input_address(queue: str) -> str:
    return f"{ADDRESS_PREFIX}{queue}"


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def guid(value: Any) -> str | None:
    """``value`` as a lower-case GUID (MassTransit writes ``ToString("D")``), or None."""
    text = _text(value)
    return text.lower() if text is not None and _GUID.match(text) else None


def address(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and _PRINTABLE.match(text) else None


def application_headers(headers: Any) -> dict[str, Any]:
    """The headers TransferConsumeContextHeaders carries on: every one but ``MT-*``, scalars only."""
    kept: dict[str, Any] = {}
    if not isinstance(headers, dict):
        return kept
    for key, value in headers.items():
        if len(kept) >= MAX_HEADERS:
            break
        if not isinstance(key, str) or not key or len(key) > 200 or key.startswith("MT-"):
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, bool) or value is None:
            continue  # MassTransit writes true as "True"; nulls are removed: neither is worth carrying
        if (isinstance(value, str) and len(value) <= 4096) or isinstance(value, int | float):
            kept[key] = value
    return kept


def origin(
    *,
    queue: str,
    content_type: str,
    message_id: str | None,
    message_types: list[str] | None,
    message: Any,
    envelope: dict[str, Any] | None,
    transport_headers: dict[str, Any],
    consumed_type: str,
) -> dict[str, Any]:
    """The ``masstransit`` option of a consumed message: from the envelope's fields, else (raw
    JSON) from the transport headers MassTransit's raw serializer writes."""
    found: dict[str, Any] = {"content_type": content_type, "message_id": message_id}
    for field, (key, header) in IDS.items():
        value = guid(envelope.get(field) if envelope is not None else transport_headers.get(header))
        if value is not None:
            found[key] = value
    for field, (key, header) in ADDRESSES.items():
        value = address(envelope.get(field) if envelope is not None else transport_headers.get(header))
        if value is not None:
            found[key] = value
    if message_types is not None:
        found["message_type"] = [t for t in message_types if isinstance(t, str)][:20]
    found["message"] = message
    headers = application_headers(envelope.get("headers") if envelope is not None else transport_headers)
    if envelope is None:  # the raw serializer's own transport headers are not application headers
        headers = {k: v for k, v in headers.items() if k not in {"MessageId", "Content-Type", *_RAW_HEADERS}}
    if headers:
        found["headers"] = headers
    found["input_address"] = input_address(queue)
    #: The inbox's MassTransit type (``Ns:Type``): its Fault<T> is ``Fault<Ns.Type>``.
    found["consumed_type"] = consumed_type
    return found


_RAW_HEADERS = {header for _, header in (*IDS.values(), *ADDRESSES.values())}


def of_message(message: Any) -> dict[str, Any] | None:
    """The MassTransit origin a Dramatiq message carries (None for backlane's own messages)."""
    options = getattr(message, "options", None)
    found = options.get(OPTION) if isinstance(options, dict) else None
    return found if isinstance(found, dict) else None


def transferred(found: dict[str, Any]) -> dict[str, Any]:
    """What TransferConsumeContextHeaders puts on a message sent while consuming ``found``:
    ``conversation_id``, ``initiator_id`` (when there is one), ``source_address``, ``headers``."""
    carried: dict[str, Any] = {}
    if found.get("conversation_id"):
        carried["conversation_id"] = found["conversation_id"]
    initiator = found.get("correlation_id") or found.get("request_id")
    if initiator:
        carried["initiator_id"] = initiator
    if found.get("input_address"):
        carried["source_address"] = found["input_address"]
    carried["headers"] = dict(found.get("headers") or {})
    return carried


#: What :func:`envelope_ids` keeps of a consumed message: its own id, its conversation, its correlation.
KEPT_IDS = ("message_id", "conversation_id", "correlation_id")


def envelope_ids(found: dict[str, Any] | None) -> dict[str, str]:
    """The ids of a consumed MassTransit message worth keeping beside the work it started (an
    order's row shows them, so an operator can follow it into the .NET services): each only
    when it is a GUID, lower-cased; an absent or forged one is left out."""
    if not isinstance(found, dict):
        return {}
    kept = {key: guid(found.get(key)) for key in KEPT_IDS}
    return {key: value for key, value in kept.items() if value is not None}
