"""The broker's publishers: one :class:`~backlane.messaging.publishing.BatchPublisher` per thread,
and what one attempt at publishing a batch does with what RabbitMQ gave back.

A message RabbitMQ nacked (a quorum queue losing its leader mid-publish) is sent again after a
reconnect, not those it confirmed; a message that came back unroutable (its queue deleted by an
operator) has its queue or exchange declared again and is resent once, else
:class:`~backlane.messaging.publishing.UnroutableMessages`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pika.exceptions
from dramatiq.common import q_name

from backlane.messaging.blocking import Blocks
from backlane.messaging.publishing import NACKED, BatchPublisher, Outgoing, UnroutableMessages

logger = logging.getLogger("backlane.broker")


class Outbox:
    """This broker's publishers; ``parameters`` gives the node list a new publisher connects through."""

    def __init__(
        self, parameters: Callable[[], Any], *, blocks: Blocks | None = None, blocked_limit: float | None = None
    ) -> None:
        self._parameters = parameters
        #: What every publisher tells when RabbitMQ blocks it; how long a publish waits out a block.
        self.blocks, self.blocked_limit = blocks, blocked_limit
        self._local = threading.local()
        self._publishers: set[BatchPublisher] = set()
        self._lock = threading.Lock()

    def current(self) -> BatchPublisher | None:
        """This thread's publisher, if it has one."""
        publisher: BatchPublisher | None = getattr(self._local, "publisher", None)
        return publisher

    def publisher(self) -> BatchPublisher:
        """This thread's publisher, opened again when it has closed."""
        publisher = self.current()
        if publisher is None or not publisher.is_open:
            if publisher is not None:
                self.drop(publisher)
            publisher = BatchPublisher(self._parameters(), blocked_limit=self.blocked_limit, blocks=self.blocks)
            self._local.publisher = publisher
            with self._lock:
                self._publishers.add(publisher)
        return publisher

    def drop(self, publisher: BatchPublisher) -> None:
        publisher.close()
        with self._lock:
            self._publishers.discard(publisher)
        if self.current() is publisher:
            self._local.publisher = None

    def close(self) -> None:
        """Close every thread's publisher."""
        with self._lock:
            publishers = list(self._publishers)
            self._publishers.clear()
        for publisher in publishers:
            publisher.close()

    def attempts(
        self,
        batch: Sequence[Outgoing],
        redeclare: Callable[[], None] | None,
        restore_queue: Callable[[str], None],
    ) -> Callable[[], None]:
        """One attempt at publishing what of ``batch`` is not confirmed yet, to run again after a
        reconnect. ``redeclare`` restores the topology of messages sent to an exchange of their own;
        without it, ``restore_queue`` declares again the queue each unroutable routing key names."""
        remaining = list(batch)

        def attempt() -> None:
            nonlocal remaining
            refused = self.publisher().publish(remaining)
            if not refused:
                return
            nacked = {mid for mid, why in refused.items() if why == NACKED}
            if nacked:
                # A quorum queue losing its leader mid-publish: send those again (after the reconnect
                # with backoff that with_reconnect gives), not the ones RabbitMQ confirmed.
                remaining = [out for out in remaining if out.message_id in refused]
                raise pika.exceptions.NackError([])
            again = [out for out in remaining if out.message_id in refused]
            if redeclare is not None:
                logger.warning("%d message(s) came back unroutable; declaring their exchange again", len(again))
                redeclare()
            for queue in {q_name(out.routing_key) for out in again} if redeclare is None else ():
                logger.warning("queue %r was missing; declaring it again and resending", queue)
                restore_queue(queue)
            remaining = again
            still_refused = self.publisher().publish(again)
            if any(why == NACKED for why in still_refused.values()):
                remaining = [out for out in again if out.message_id in still_refused]
                raise pika.exceptions.NackError([])
            if still_refused:
                raise UnroutableMessages(still_refused)

        return attempt
