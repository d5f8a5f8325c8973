"""Operating the dead-letter queues: list, requeue (one or all), purge.

Dead letters live in ``<queue>.XQ`` (see :mod:`backlane.messaging.deadletter` and
:mod:`backlane.messaging.letters`). Any message there is listed, whatever its body and
headers (one backlane cannot read is shown as its bytes and marked so). Requeueing puts a
delivery refused at the boundary (or any message backlane did not write) back exactly as
it was first published, body and properties; backlane's own failed message goes back with
its annotation and retry counters stripped, marked requeued and signed. Each is published
(confirmed) before it is removed from ``.XQ``. Messages are read over AMQP without acking, so an
interrupted command leaves every dead letter where it was. Whatever goes wrong is a one-line
:class:`~backlane.errors.Problem` with its exit status.

One module per job:

* :mod:`.letter`: a letter as read from ``.XQ`` (:func:`parse`) and the message requeueing
  it publishes (:func:`requeue_outgoing`);
* :mod:`.display`: a letter as a person reads it, every field bounded (:func:`display_row`);
* :mod:`.connection`: the commands' own connection to RabbitMQ, reading ``.XQ`` unacked;
* :mod:`.commands`: :func:`list_dead_letters`, :func:`requeue`, :func:`purge`, which the CLI
  and the dashboard call.
"""

from __future__ import annotations

from backlane.operations.dead_letters.commands import (
    DEFAULT_LIST_LIMIT,
    Listing,
    RequeueReport,
    deployment_queues,
    list_dead_letters,
    purge,
    requeue,
    select_queues,
)
from backlane.operations.dead_letters.display import (
    FIELD_LIMIT,
    display_row,
    retries_of,
    shown_body,
    shown_item,
)
from backlane.operations.dead_letters.letter import FORMS, DeadLetter, parse, requeue_body, requeue_outgoing

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "FIELD_LIMIT",
    "FORMS",
    "DeadLetter",
    "Listing",
    "RequeueReport",
    "deployment_queues",
    "display_row",
    "list_dead_letters",
    "parse",
    "purge",
    "requeue",
    "requeue_body",
    "requeue_outgoing",
    "retries_of",
    "select_queues",
    "shown_body",
    "shown_item",
]
