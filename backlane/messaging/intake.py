"""What a consumer makes of one delivery: a Dramatiq message to run, or the reason it is refused.

Everything a delivery carries (body, content type, headers, message id) was written by
a publisher backlane does not control, so :func:`admit` is total: any byte string and
any property table ends as a :class:`~dramatiq.message.Message` for an actor of this
queue, or as a :class:`Refused` with a reason a person understands, never an exception
in the consumer thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dramatiq.common import q_name
from dramatiq.message import Message

from backlane.core.log_limits import cut
from backlane.errors import MalformedMessage
from backlane.messaging import amqp_tables, signing

if TYPE_CHECKING:
    from backlane.messaging.broker import BacklaneBroker

logger = logging.getLogger("backlane.intake")

# Headers nested a few hundred levels deep made pika raise before admit saw the delivery.
amqp_tables.install()


@dataclass(frozen=True)
class Refused:
    """A delivery that is dead-lettered as it came, with ``reason``; ``message`` when it decoded."""

    reason: str
    message: Message | None = None


#: Longest message id AMQP carries (a short string): a longer one could not be dead-lettered.
MAX_ID_BYTES = 255
#: Used when a broker does not say (a stub in unit tests).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Fields of a Dramatiq envelope; message_id and message_timestamp may be left out.
_REQUIRED = ("queue_name", "actor_name", "args", "kwargs", "options")
_FIELDS = frozenset((*_REQUIRED, "message_id", "message_timestamp"))
#: Latest plausible message timestamp, milliseconds (year 2286): past it, arithmetic on it overflows.
_MAX_TIMESTAMP_MS = 10**13


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for a reason a person reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def read_json(body: bytes, what: str = "the body") -> Any:
    """``body`` decoded as JSON (a UTF-8 BOM allowed), or :class:`NotJSON` with the reason in words."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotJSON(f"{what} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotJSON(f"{what} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise NotJSON(f"{what} is JSON nested too deeply to read") from None
    except ValueError:  # Python's limit on the digits of an integer (4,300), the one other refusal
        raise NotJSON(f"{what} holds a number too long to read") from None


class NotJSON(MalformedMessage):
    """A body that is not JSON; its reason says why in words."""


def id_problem(value: Any, field: str) -> str | None:
    """Why ``value`` cannot be a message id (AMQP short string), or None."""
    if not isinstance(value, str) or not value:
        return f"{field} must be a non-empty string, got {json_type(value)}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{field} is not valid Unicode text (it holds a lone surrogate)"
    if size > MAX_ID_BYTES:
        return f"{field} is {len(value):,} characters long; at most {MAX_ID_BYTES} bytes are allowed"
    return None


def decode_envelope(body: bytes) -> Message | str:
    """A Dramatiq envelope (JSON), checked field by field: the message, or why not."""
    try:
        fields = read_json(body)
    except NotJSON as exc:
        return f"not a valid message envelope: {exc}"
    if not isinstance(fields, dict):
        return f"not a valid message envelope: it must be a JSON object, got {json_type(fields)}"
    missing = [f for f in _REQUIRED if f not in fields]
    if missing:
        return f"not a valid message envelope: field(s) {', '.join(missing)} missing"
    unknown = sorted(str(k) for k in fields if k not in _FIELDS)
    if unknown:
        return f"not a valid message envelope: unknown field(s) {cut(', '.join(unknown), 120)}"
    for name, kind, check in (
        ("queue_name", "a string", isinstance(fields["queue_name"], str)),
        ("actor_name", "a non-empty string", isinstance(fields["actor_name"], str) and bool(fields["actor_name"])),
        ("args", "an array", isinstance(fields["args"], list)),
        ("kwargs", "an object", isinstance(fields["kwargs"], dict)),
        ("options", "an object", isinstance(fields["options"], dict)),
    ):
        if not check:
            return f"envelope field {name} must be {kind}, got {json_type(fields[name])}"
    if len(fields["actor_name"]) > MAX_ID_BYTES:
        return f"envelope field actor_name is {len(fields['actor_name']):,} characters long"
    if "message_id" in fields:
        problem = id_problem(fields["message_id"], "envelope field message_id")
        if problem is not None:
            return problem
    if "message_timestamp" in fields:
        stamp = fields["message_timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 <= stamp <= _MAX_TIMESTAMP_MS:
            return "envelope field message_timestamp must be milliseconds since 1970 (a whole number)"
    fields["args"] = tuple(fields["args"])
    return Message(**fields)


def envelope_problem(message: Message) -> str | None:
    """Why a decoded envelope cannot be dispatched, or None when it can."""
    if not isinstance(message.actor_name, str) or not message.actor_name:
        return "envelope field actor_name must be a non-empty string"
    if not isinstance(message.kwargs, dict):
        return "envelope field kwargs must be an object"
    if not isinstance(message.options, dict):
        return "envelope field options must be an object"
    return None


def admit(broker: BacklaneBroker, queue_name: str, properties: Any, body: bytes) -> Message | Refused:
    """The delivery as a message for one of ``queue_name``'s actors, or why it is refused; never raises.

    ``queue_name`` is the consumed queue (a delay queue keeps its ``.DQ`` name)."""
    try:
        admitted = _admit(broker, queue_name, properties, body)
    except RecursionError:
        return Refused("the message is nested too deeply to read")
    except Exception as exc:  # the last resort: a delivery never ends the consumer
        logger.exception("a delivery on %s could not be read", queue_name)
        return Refused(f"the message could not be read ({type(exc).__name__}); the worker's log has the details")
    if isinstance(admitted, Refused):
        return Refused(readable(admitted.reason), admitted.message)
    return admitted


#: Longest reason a refusal gives (it goes into an AMQP header and a person's listing).
MAX_REASON_CHARS = 500


def readable(reason: str) -> str:
    """``reason`` with control characters and lone surrogates escaped, then bounded in length
    (escaped first: a cut reason full of control characters would grow fourfold after it)."""
    if not reason.isprintable():
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
    return cut(reason, MAX_REASON_CHARS)


def properties_problem(properties: Any) -> str | None:
    """Why a delivery's AMQP properties cannot be taken (pika gives these types; a test or a
    future client might not), or None."""
    content_type = getattr(properties, "content_type", None)
    if content_type is not None and not isinstance(content_type, str):
        return "the content type must be text"
    headers = getattr(properties, "headers", None)
    if headers is not None and not isinstance(headers, dict):
        return "the headers must be a table"
    if headers and amqp_tables.holds_cut(headers):
        return f"the headers nest tables or arrays deeper than {amqp_tables.MAX_DEPTH} levels"
    message_id = getattr(properties, "message_id", None)
    if message_id is not None:
        return id_problem(message_id, "the message_id property")
    return None


def _admit(broker: BacklaneBroker, queue_name: str, properties: Any, body: bytes) -> Message | Refused:
    if not isinstance(body, bytes):
        return Refused("the body is not a byte string")
    problem = properties_problem(properties)
    if problem is not None:
        return Refused(problem)
    limit = getattr(broker, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    if len(body) > limit:
        return Refused(
            f"the body is {len(body):,} bytes, over the limit of {limit:,} (BACKLANE_BROKER__MAX_BODY_BYTES); "
            "it was not read"
        )
    inbox = broker.masstransit_inboxes.get(q_name(queue_name))
    adapted = inbox.adapt(properties, body) if inbox is not None else None
    if isinstance(adapted, str):  # a MassTransit message that cannot be taken
        return Refused(adapted)
    message: Message | str = adapted if adapted is not None else decode_envelope(body)
    if isinstance(message, str):
        return Refused(message)
    problem = envelope_problem(message)
    if problem is None and message.actor_name not in broker.actors:
        # Dramatiq would fail inside its own middleware and ack it: a silent loss.
        problem = f"no actor named {cut(message.actor_name, 100)!r} is registered for queue {q_name(queue_name)!r}"
    if problem is None:
        problem, message = signing.checked(broker, queue_name, message, built_here=adapted is not None)
    if problem is not None:
        return Refused(problem, message)
    if message.queue_name != queue_name:
        # A foreign publisher may name another queue; post-processing keys on it.
        message = message.copy(queue_name=queue_name)
    return message
