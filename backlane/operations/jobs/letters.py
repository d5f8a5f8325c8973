"""The dead-letter job kinds: ``requeue`` (every letter of a queue's .XQ, or of every queue's)
and ``purge`` (empty a queue's .XQ, or every queue's).

Requeue keeps the rules of :func:`backlane.operations.dead_letters.requeue`, at any size:

* only what each .XQ held when the run started is read (a requeued message that fails again
  lands behind them), so a run ends even while a worker dead-letters what it requeues;
* each letter is published to its queue, confirmed, before it is acked in .XQ (a batch of at
  most :data:`BATCH` waits for its confirms together), so a run stopped, interrupted or killed
  loses nothing: every letter not acked is still in its .XQ;
* a message id is requeued once per run: the run keeps a 64-bit hash of each id it requeued
  (about 70 bytes each, measured in benchmarks/bulk_requeue.py), never the letters; a repeat,
  or a letter holding only the head of its body, is left in place and counted as skipped.

Memory is bounded by the batch (its letters' bodies) plus that set of hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dramatiq.common import q_name, xq_name

from backlane.messaging import signing
from backlane.messaging.publishing import Outgoing
from backlane.operations.dead_letters.commands import select_queues
from backlane.operations.dead_letters.connection import EMPTY_AFTER, connect, count_letters, return_all
from backlane.operations.dead_letters.letter import parse, requeue_outgoing
from backlane.operations.jobs.kinds import JobKind, Progress, register_kind

if TYPE_CHECKING:
    from backlane.core.runtime import Runtime

#: Letters published together, their confirms waited on once, before each is acked in .XQ.
BATCH = 200


def _queues(runtime: Runtime, params: Mapping[str, Any]) -> tuple[list[str], bool]:
    queue = params.get("queue") or None
    # Every queue: one never declared has no dead letters; a named one must exist.
    return select_queues(runtime.broker, queue), queue is None


def _broker_args(runtime: Runtime) -> tuple[str, float, int]:
    broker = runtime.settings.broker
    return broker.url.get_secret_value(), broker.command_timeout, broker.heartbeat_seconds


def count_dead_letters(runtime: Runtime, params: Mapping[str, Any]) -> int:
    """Dead letters in the job's .XQ (or every queue's) now."""
    queues, missing_ok = _queues(runtime, params)
    url, timeout, heartbeat = _broker_args(runtime)
    with connect(url, timeout, heartbeat) as connection:
        return sum(count_letters(connection, queue, missing_ok) or 0 for queue in queues)


def _id_key(message_id: str) -> int | None:
    """A message id as 64 bits (a collision among 10^6 ids: about 3 in 10^8)."""
    if not message_id:
        return None
    return int.from_bytes(hashlib.blake2b(message_id.encode("utf-8", "replace"), digest_size=8).digest(), "big")


def _where(in_queue: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count:,}" for name, count in in_queue.items() if count) or "none"


class _Reader:
    """The letters of an .XQ as RabbitMQ pushes them (``basic.consume``: one round trip per
    window of letters, not one per letter as ``basic.get`` takes), at most ``window`` of them
    read ahead. A letter left in place stays unacked (held) until the run ends, and holds one of
    the consumer's prefetch slots: when enough are held, the consumer is made again with room
    for them, so held letters never stall it."""

    def __init__(self, channel: Any, xq: str, window: int) -> None:
        self.channel, self.xq, self.window = channel, xq, window
        self.held = self._held_at_start = 0
        self._deliveries: Iterator[tuple[Any, Any, Any]] | None = None

    def _subscribe(self) -> None:
        self.close()  # the letters read ahead and not yet handed out go back, unread
        self.channel.basic_qos(prefetch_count=self.window + self.held)
        self._deliveries = self.channel.consume(self.xq, auto_ack=False, inactivity_timeout=EMPTY_AFTER)
        self._held_at_start = self.held

    def next(self) -> tuple[Any, Any, bytes] | None:
        """The next letter (method, properties, body); None once the .XQ has none."""
        if self._deliveries is None or self.held - self._held_at_start >= max(1, self.window // 4):
            self._subscribe()
        assert self._deliveries is not None
        method, props, body = next(self._deliveries)
        return None if method is None else (method, props, body)

    def hold(self) -> None:
        self.held += 1

    def close(self) -> None:
        if self._deliveries is not None:
            self.channel.cancel()
            self._deliveries = None


def run_requeue(runtime: Runtime, params: Mapping[str, Any], progress: Progress) -> str:
    """Requeue every dead letter the job's .XQ held at the start of this run; the report line."""
    queues, missing_ok = _queues(runtime, params)
    url, timeout, heartbeat = _broker_args(runtime)
    broker = runtime.broker
    key = signing.broker_key(broker)
    rate = params.get("rate") or None
    batch_size = BATCH if not rate else max(1, min(BATCH, int(float(rate) / 10)))
    in_queue: dict[str, int] = {}
    requeued = repeated = truncated = 0
    seen: set[int] = set()
    with connect(url, timeout, heartbeat) as connection:
        channel = connection.channel()
        try:
            for queue in queues:
                if progress.should_stop():
                    break
                total = count_letters(connection, queue, missing_ok)
                if total is None:
                    continue
                xq = xq_name(q_name(queue))
                in_queue[xq] = total
                if not total:
                    continue
                reader = _Reader(channel, xq, 2 * batch_size)
                read = 0
                while read < total and not progress.should_stop():
                    progress.pace(rate)
                    batch: list[tuple[int, Outgoing]] = []
                    while len(batch) < batch_size and read < total:
                        delivery = reader.next()
                        if delivery is None:  # fewer than counted: another reader took some
                            read = total
                            break
                        method, props, raw = delivery
                        read += 1
                        letter = parse(queue, raw, props)
                        id_key = _id_key(letter.message_id)
                        if id_key is not None and id_key in seen:
                            repeated += 1
                            reader.hold()
                            progress.advance(skipped=1)
                            continue
                        if letter.truncated is not None:
                            truncated += 1
                            reader.hold()
                            progress.advance(skipped=1)
                            continue
                        if id_key is not None:
                            seen.add(id_key)
                        batch.append((method.delivery_tag, requeue_outgoing(letter, key)))
                    if batch:
                        broker.declare_queue(q_name(queue), ensure=True)
                        broker.publish([outgoing for _tag, outgoing in batch])
                        for tag, _outgoing in batch:
                            channel.basic_ack(tag)  # only once the message is safely back on its queue
                        requeued += len(batch)
                        progress.advance(done=len(batch))
                reader.close()  # read ahead beyond the count (letters that came after the start): back, unread
        finally:
            return_all(channel)  # the ones left in place, explicitly
    text = f"requeued {requeued:,} message(s) of {sum(in_queue.values()):,} dead letter(s) ({_where(in_queue)})"
    left = []
    if truncated:
        left.append(f"{truncated:,} left in place that hold only the head of their body (too large to requeue)")
    if repeated:
        left.append(f"{repeated:,} left in place whose message id this run had already requeued")
    return text + ("; " + "; ".join(left) if left else "")


def run_purge(runtime: Runtime, params: Mapping[str, Any], progress: Progress) -> str:
    """Empty the job's .XQ (or each queue's, one after the other); the report line."""
    queues, missing_ok = _queues(runtime, params)
    url, timeout, heartbeat = _broker_args(runtime)
    counts: dict[str, int] = {}
    with connect(url, timeout, heartbeat) as connection:
        for queue in queues:
            if progress.should_stop():
                break
            if count_letters(connection, queue, missing_ok) is None:
                continue
            channel = connection.channel()
            result = channel.queue_purge(xq_name(q_name(queue)))
            channel.close()
            counts[q_name(queue)] = int(result.method.message_count)
            progress.advance(done=counts[q_name(queue)])
    return "; ".join(f"purged {count:,} from {name}.XQ" for name, count in counts.items()) or "nothing to purge"


def _describe_requeue(params: Mapping[str, Any]) -> tuple[str, str]:
    rate = params.get("rate")
    return params.get("queue") or "every queue", "all letters" + (f", at most {rate}/s" if rate else "")


def _describe_purge(params: Mapping[str, Any]) -> tuple[str, str]:
    return params.get("queue") or "every queue", "every letter, for good"


REQUEUE = register_kind(JobKind("requeue", count_dead_letters, run_requeue, _describe_requeue))
PURGE = register_kind(JobKind("purge", count_dead_letters, run_purge, _describe_purge))
