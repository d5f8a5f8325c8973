"""What a consumer makes of one delivery: a Dramatiq message to run, or the reason it is refused.

Everything a delivery carries (body, content type, headers, message id) was written by
a publisher backlane does not control, so :func:`admit` is total: any byte string and
any property table ends as a :class:`~dramatiq.message.Message` for an actor of this
queue, or as a :class:`Refused` with a reason a person understands, never an exception
in the consumer thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dramatiq.common import q_name
from dramatiq.errors import DecodeError
from dramatiq.message import Message

from backlane.core.log_limits import cut
from backlane.messaging import signing

if TYPE_CHECKING:
    from backlane.messaging.broker import BacklaneBroker


@dataclass(frozen=True)
class Refused:
    """A delivery that is dead-lettered as it came, with ``reason``; ``message`` when it decoded."""

    reason: str
    message: Message | None = None


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
    """The delivery as a message for one of ``queue_name``'s actors, or why it is refused.

    ``queue_name`` is the consumed queue (a delay queue keeps its ``.DQ`` name)."""
    try:
        inbox = broker.masstransit_inboxes.get(q_name(queue_name))
        adapted = inbox.adapt(properties, body) if inbox is not None else None
        if isinstance(adapted, str):  # a MassTransit message that cannot be taken
            return Refused(adapted)
        message = adapted or Message.decode(body)
    except DecodeError as e:
        return Refused(f"not a valid message envelope: {e.error or e}")
    problem = envelope_problem(message)
    if problem is None and message.actor_name not in broker.actors:
        # Dramatiq would fail inside its own middleware and ack it: a silent loss.
        problem = f"no actor named {cut(message.actor_name, 100)!r} is registered for queue {queue_name!r}"
    if problem is None:
        problem, message = signing.checked(broker, queue_name, message, built_here=adapted is not None)
    if problem is not None:
        return Refused(problem, message)
    if message.queue_name != queue_name:
        # A foreign publisher may name another queue; post-processing keys on it.
        message = message.copy(queue_name=queue_name)
    return message
