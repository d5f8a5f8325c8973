"""What backlane declares on RabbitMQ for a queue: the queue, its delay queue, its dead-letter queue.

Dramatiq declares the three lazily (``RabbitmqBroker._ensure_queue`` calls ``_declare_queue``,
``_declare_dq_queue``, ``_declare_xq_queue`` on the thread's channel); the broker overrides those
with :class:`Topology`'s, which add:

* quorum queues when ``broker.queue_type`` says so, for every queue (work, delay, dead-letter);
  a queue that exists with the other type is one line (:class:`~backlane.errors.QueueTypeMismatch`)
  naming the migration, not a retried 406 (:func:`~backlane.messaging.broker_faults.declare_checked`);
* dead-letter queues keeping their letters ``dead_letter_ttl_ms``, with no delivery limit on RabbitMQ 4;
* an inbox that also takes MassTransit publishes gets its message-type exchange declared and bound.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.common import dq_name, xq_name

from backlane.messaging.broker_faults import _declares as declares
from backlane.messaging.broker_faults import declare_checked
from backlane.messaging.links import server_major
from backlane.messaging.masstransit import MassTransitInbox

logger = logging.getLogger("backlane.broker")

#: RabbitMQ 4's default delivery limit of a quorum queue (3.x has none).
DEFAULT_DELIVERY_LIMIT = 20


class Topology:
    """The queues of one broker, declared on whichever channel is given."""

    def __init__(self, queue_type: str, dead_letter_ttl_ms: int) -> None:
        self.queue_type = queue_type
        self.dead_letter_ttl_ms = dead_letter_ttl_ms
        #: Inbox queues that also take MassTransit publishes, by queue name.
        self.masstransit_inboxes: dict[str, MassTransitInbox] = {}
        self._xq_warned: set[str] = set()

    def arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Dramatiq's arguments of a work or delay queue, as this broker's queue type has them."""
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
            arguments.pop("x-max-priority", None)  # quorum queues have no priorities: RabbitMQ refuses it
        return arguments

    def declare_all(self, channel: Any, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare ``queue_name``, its delay queue and its dead-letter queue, in Dramatiq's order."""
        self.declare_queue(channel, queue_name, arguments)
        self.declare_dq_queue(channel, queue_name, arguments)
        self.declare_xq_queue(channel, queue_name)

    def declare_queue(self, channel: Any, queue_name: str, arguments: dict[str, Any]) -> Any:
        result = declare_checked(channel, queue_name, arguments)
        inbox = self.masstransit_inboxes.get(queue_name)
        if inbox is not None:
            inbox.declare(channel)
        return result

    def declare_dq_queue(self, channel: Any, queue_name: str, arguments: dict[str, Any]) -> Any:
        return declare_checked(channel, dq_name(queue_name), arguments)

    def declare_xq_queue(self, channel: Any, queue_name: str) -> Any:
        """The dead-letter queue: letters are read (listed, shown on the dashboard) without being
        consumed, which a quorum queue counts as deliveries. Its delivery limit is turned off on
        RabbitMQ 4 (default 20: a letter would be dropped after ~20 views); 3.x has none by
        default, and reads -1 as a limit, dropping at the first read. A quorum .XQ made before
        with another limit is used as it is, with a warning (docs/scaling.md, RabbitMQ 4)."""
        name = xq_name(queue_name)
        arguments = xq_arguments(self.queue_type, self.dead_letter_ttl_ms, server_major(channel))
        if self.queue_type == "quorum" and not declares(channel, name, arguments):
            other = {k: v for k, v in arguments.items() if k != "x-delivery-limit"}
            if "x-delivery-limit" not in arguments:
                other["x-delivery-limit"] = DEFAULT_DELIVERY_LIMIT
            if declares(channel, name, other) or declares(
                channel, name, {k: v for k, v in other.items() if k != "x-delivery-limit"}
            ):
                if name not in self._xq_warned:
                    self._xq_warned.add(name)
                    logger.warning(
                        "%s exists with another delivery limit than %s: each read of a letter (list, dashboard) "
                        "counts toward it on RabbitMQ 4, and a letter past it is dropped; "
                        "see docs/scaling.md (RabbitMQ 4)",
                        name,
                        arguments.get("x-delivery-limit", "none"),
                    )
                return channel.queue_declare(queue=name, passive=True)
        return declare_checked(channel, name, arguments)


def xq_arguments(queue_type: str, ttl_ms: int, major: int | None) -> dict[str, Any]:
    """A dead-letter queue's arguments: its letters' time to live; for a quorum queue on
    RabbitMQ 4 or later, no delivery limit (``-1``; 3.x takes -1 as a limit and has none by default)."""
    arguments: dict[str, Any] = {"x-message-ttl": ttl_ms}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        if major is not None and major >= 4:
            arguments["x-delivery-limit"] = -1
    return arguments
