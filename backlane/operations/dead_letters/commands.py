"""The dead-letter operations: list, requeue (one or all), purge; the CLI and the dashboard call these.

Every operation works on the dead letters a queue held when it started: it reads the
queue's count first (a passive declare) and at most that many messages. A requeued message
that fails again lands at the tail of ``.XQ`` and is not read again by the same run (nor is
any message whose id this run already requeued), so ``requeue --all`` ends even while a
worker dead-letters what it requeues. Each requeued message is published (confirmed) before
it is removed from ``.XQ``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dramatiq.common import q_name, xq_name

from backlane.errors import EXIT_UNAVAILABLE, EXIT_USAGE, Problem
from backlane.messaging import signing
from backlane.operations.dead_letters.connection import connect, count_letters, each_letter, return_all
from backlane.operations.dead_letters.letter import DeadLetter, requeue_outgoing

#: Dead letters `list` shows unless told otherwise.
DEFAULT_LIST_LIMIT = 100


def deployment_queues(broker: Any) -> list[str]:
    """Every queue of this deployment (each has its .XQ), by name."""
    return sorted({actor.queue_name for actor in broker.actors.values()})


def select_queues(broker: Any, queue: str | None) -> list[str]:
    """The queues a command acts on: ``queue`` (``orders`` or ``orders.XQ``), else all of them;
    a :class:`Problem` listing the deployment's queues when ``queue`` is none of them."""
    known = deployment_queues(broker)
    if queue is None:
        return known
    if queue.removesuffix(".XQ") not in known:
        raise Problem(f"no queue {queue!r} in this deployment; its queues are: {', '.join(known)}", EXIT_USAGE)
    return [queue.removesuffix(".XQ")]


@dataclass
class Listing:
    """What `list` read from one dead-letter queue: ``letters`` out of ``total``."""

    xq: str
    total: int
    letters: list[DeadLetter]


def list_dead_letters(
    amqp_url: str,
    queues: list[str],
    limit: int = DEFAULT_LIST_LIMIT,
    *,
    missing_ok: bool = False,
    timeout: float | None = None,
    heartbeat: int | None = None,
) -> list[Listing]:
    """At most ``limit`` dead letters over ``queues``, with how many each queue holds; consumes nothing.

    A queue whose .XQ does not exist is skipped when ``missing_ok``, else a :class:`Problem`."""
    listings: list[Listing] = []
    with connect(amqp_url, timeout, heartbeat) as connection:
        channel = connection.channel()
        remaining = max(limit, 0)
        for queue in queues:
            total = count_letters(connection, queue, missing_ok)
            if total is None:
                continue
            read = [letter for _tag, letter in each_letter(channel, queue, min(total, remaining))]
            remaining -= len(read)
            listings.append(Listing(xq_name(q_name(queue)), total, read))
        return_all(channel)
    return listings


@dataclass
class RequeueReport:
    """What one requeue run did."""

    #: Dead letters in each .XQ when the run started; the run reads no more than these.
    in_queue: dict[str, int] = field(default_factory=dict)
    requeued: list[DeadLetter] = field(default_factory=list)
    #: Read and left in place: not the ones asked for.
    not_matching: int = 0
    #: Read and left in place: their message id was already requeued by this run.
    repeated: int = 0
    #: Read and left in place: letters holding only the head of their body (too large for RabbitMQ).
    truncated: int = 0

    @property
    def total(self) -> int:
        return sum(self.in_queue.values())

    def summary(self, message_id: str | None = None) -> str:
        where = ", ".join(f"{name}: {count:,}" for name, count in self.in_queue.items() if count) or "none"
        if message_id is not None and not self.requeued:
            return f"message id {message_id} not found among {self.total:,} dead letter(s) ({where}); nothing requeued"
        text = f"requeued {len(self.requeued):,} message(s) of {self.total:,} dead letter(s) ({where})"
        left = []
        if message_id is not None:
            others = self.total - len(self.requeued)
            left.append(f"{others:,} other(s) left in place")
        elif self.not_matching:
            left.append(f"{self.not_matching:,} not matching left in place")
        if self.truncated:
            left.append(
                f"{self.truncated:,} left in place that hold only the head of their body (too large to requeue)"
            )
        if self.repeated:
            left.append(f"{self.repeated:,} left in place whose message id this run had already requeued")
        return text + ("; " + "; ".join(left) if left else "")


@dataclass
class _Run:
    """One requeue run: what it asks for and what it did so far."""

    broker: Any
    matches: Callable[[DeadLetter], bool]
    first_only: bool
    missing_ok: bool
    report: RequeueReport = field(default_factory=RequeueReport)
    done_ids: set[str] = field(default_factory=set)

    def over(self, connection: Any, channel: Any, queues: list[str]) -> None:
        for queue in queues:
            total = count_letters(connection, queue, self.missing_ok)
            if total is None:
                continue
            self.report.in_queue[xq_name(q_name(queue))] = total
            for tag, letter in each_letter(channel, queue, total):
                if self.wanted(letter):
                    self.put_back(channel, tag, letter)
                    if self.first_only:
                        return

    def wanted(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` is to be requeued; when not, counted by why it stays."""
        report = self.report
        if letter.message_id and letter.message_id in self.done_ids:
            report.repeated += 1
        elif not self.matches(letter):
            report.not_matching += 1
        elif letter.truncated is not None:
            report.truncated += 1
        else:
            return True
        return False

    def put_back(self, channel: Any, tag: int, letter: DeadLetter) -> None:
        self.broker.declare_queue(letter.queue, ensure=True)
        self.broker.publish([requeue_outgoing(letter, signing.broker_key(self.broker))])
        channel.basic_ack(tag)  # only once the message is safely back on its queue
        self.report.requeued.append(letter)
        if letter.message_id:
            self.done_ids.add(letter.message_id)


def requeue(
    broker: Any,
    amqp_url: str,
    queues: list[str],
    matches: Callable[[DeadLetter], bool],
    *,
    first_only: bool = False,
    missing_ok: bool = False,
    timeout: float | None = None,
) -> RequeueReport:
    """Put matching dead letters back on their queues, each at most once, and say what was done.

    Only the dead letters each .XQ held at the start are read (a requeued message that
    fails again lands behind them), a message id is requeued once per run, and with
    ``first_only`` the run stops at the first match. Each message is published to its
    queue (confirmed) before it is acked in .XQ, so an interrupted run loses nothing.
    """
    run = _Run(broker, matches, first_only, missing_ok)
    try:
        with connect(amqp_url, timeout, getattr(broker, "heartbeat", None)) as connection:
            channel = connection.channel()
            try:
                run.over(connection, channel, queues)
            finally:
                return_all(channel)  # the ones left in place, explicitly
    except Problem as problem:
        done = len(run.report.requeued)
        if problem.status != EXIT_UNAVAILABLE or not done:
            raise
        raise Problem(
            f"{problem.line} (after requeueing {done:,}; every other dead letter is still in its .XQ)",
            problem.status,
        ) from None
    return run.report


def purge(
    amqp_url: str,
    queues: list[str],
    *,
    missing_ok: bool = False,
    timeout: float | None = None,
    heartbeat: int | None = None,
) -> dict[str, int]:
    """Empty the .XQ of each of ``queues``: how many letters each held."""
    counts = {}
    with connect(amqp_url, timeout, heartbeat) as connection:
        for queue in queues:
            if count_letters(connection, queue, missing_ok) is None:
                continue
            channel = connection.channel()
            result = channel.queue_purge(xq_name(q_name(queue)))
            counts[q_name(queue)] = result.method.message_count
            channel.close()
    return counts
