"""Telling a RabbitMQ outage from a refusal, and saying each once.

Two faults look alike to pika, and must be handled oppositely:

* **RabbitMQ is away** (stopped, restarting, network down): wait with capped
  backoff, however long, and resume. :class:`OutageLog` says so once per outage
  and once when it is over, whichever thread noticed; pika's own log lines (a
  traceback and half a dozen errors per connection attempt) are silenced by
  :func:`quiet_pika`, since every one of them also surfaces as an exception we report.
* **RabbitMQ refuses us** (wrong user or password, vhost missing or not allowed,
  a permission denied): waiting cannot help. :func:`refusal_of` recognises it,
  and :func:`~backlane.problems.broker_refused` is the :class:`~backlane.errors.Problem`
  naming ``BACKLANE_BROKER__URL`` with the URL shown without its password. A
  long-running process (worker, clock) exits with
  :data:`~backlane.errors.EXIT_CONFIG` (:func:`exit_refused`); a command prints the line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from typing import Any

import pika.exceptions

from backlane.errors import EXIT_CONFIG, BacklaneError, QueueMismatch, QueueTypeMismatch, named_cause, redact_url

logger = logging.getLogger("backlane.broker")

# "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused ...'" inside pika's Probable* errors.
_REPLY = re.compile(r"\((\d{3})\) ([\"'])(.*)\2$")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: Dramatiq's ``ConnectionClosed(pika_error)``, causes, contexts, args."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([getattr(item, "message", None), item.__cause__, item.__context__, *item.args])
    return seen


def refusal_of(exc: BaseException) -> str | None:
    """RabbitMQ's reason when ``exc`` means it refused our credentials or permissions, else None.

    A connection lost *during* the handshake is what pika also calls a "probable
    authentication error"; only a close that carries RabbitMQ's own 403/530 reply
    counts as a refusal, and "vhost ... is down" (a node still starting) does not.
    """
    for cause in _causes(exc):
        if isinstance(cause, pika.exceptions.AuthenticationError):
            return f"authentication refused ({cause})"
        if isinstance(cause, pika.exceptions.ConnectionClosedByBroker):
            code, text = cause.reply_code, cause.reply_text
        elif isinstance(cause, pika.exceptions.ChannelClosedByBroker):
            if cause.reply_code == 403:
                return str(cause.reply_text)
            continue
        elif isinstance(cause, pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError):
            found = _REPLY.search(str(cause.args[0]) if cause.args else "")
            if found is None:
                continue
            code, text = int(found.group(1)), found.group(3)
        else:
            continue
        if code == 403 or (code == 530 and " is down" not in text):
            return str(text)
    return None


_exit_lock = threading.Lock()


def exit_refused(refused: BacklaneError) -> None:
    """End a worker or clock process with one line and :data:`EXIT_CONFIG`: retrying a refusal
    (a :class:`~backlane.errors.Problem`, or a queue of the wrong type, :class:`QueueTypeMismatch`)
    would only repeat it. Several consumer threads may get here at once: the first says it and
    ends the process, the others wait for that."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main:
        _exit_lock.acquire()  # never released: os._exit below ends the process
    logger.critical("%s", refused)
    for handler in logging.getLogger().handlers + logger.handlers:
        with contextlib.suppress(Exception):  # best effort: a handler on a closed stream must not stop the exit
            handler.flush()
    if on_main:
        raise SystemExit(EXIT_CONFIG)
    os._exit(EXIT_CONFIG)  # from a worker or consumer thread: the whole process goes


def declare_checked(channel: Any, queue: str, arguments: dict[str, Any]) -> Any:
    """``channel.queue_declare`` (durable), turning RabbitMQ's PRECONDITION_FAILED (the queue exists
    with other arguments) into one line: :class:`QueueTypeMismatch` naming both types when the
    queue is of the other type (classic vs quorum), else :class:`QueueMismatch` with RabbitMQ's words."""
    try:
        return channel.queue_declare(queue=queue, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406 or "inequivalent arg" not in str(exc.reply_text):
            raise
        detail = str(exc.reply_text).replace("PRECONDITION_FAILED - ", "")
        requested = str(arguments.get("x-queue-type", "classic"))
        other = "classic" if requested == "quorum" else "quorum"
        if _declares(channel, queue, _with_type(arguments, other)):
            raise QueueTypeMismatch(queue, other, requested) from None
        raise QueueMismatch(queue, detail) from None


def _with_type(arguments: dict[str, Any], queue_type: str) -> dict[str, Any]:
    flipped = {k: v for k, v in arguments.items() if k != "x-queue-type"}
    if queue_type == "quorum":
        flipped["x-queue-type"] = "quorum"
        flipped.pop("x-max-priority", None)
    return flipped


def _declares(channel: Any, queue: str, arguments: dict[str, Any]) -> bool:
    """True when declaring ``queue`` with ``arguments`` is accepted (it exists with exactly those):
    RabbitMQ checks the arguments one by one, so the one it names is not always the queue type."""
    try:
        probe = channel.connection.channel()
    except Exception:
        return False
    try:
        probe.queue_declare(queue=queue, durable=True, arguments=arguments)
        return True
    except pika.exceptions.AMQPError:
        return False
    finally:
        with contextlib.suppress(Exception):
            if probe.is_open:
                probe.close()


class OutageLog:
    """Says "RabbitMQ is unreachable" once per outage and "reachable again" once after it, across threads."""

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def down(self, exc: BaseException, doing: str) -> None:
        if self._since is not None:
            return
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning(
            "RabbitMQ at %s is unreachable (%s) while trying to %s; waiting for it, retrying with backoff",
            self.url,
            named_cause(exc),
            doing,
        )

    def up(self) -> None:
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.warning("RabbitMQ at %s is reachable again after %.0f s", self.url, time.monotonic() - since)


def quiet_pika() -> None:
    """Silence pika's own connection-error logging, unless someone configured pika's logger.

    Each failed connection attempt makes pika log a traceback and about six errors;
    through an outage that is hundreds of lines. Every one of those failures also
    reaches backlane as an exception, reported once per outage by :class:`OutageLog`.
    """
    pika_logger = logging.getLogger("pika")
    if pika_logger.level == logging.NOTSET:
        pika_logger.setLevel(logging.CRITICAL)


class QuietConsumerRestarts(logging.Filter):
    """Drop Dramatiq's per-consumer "connection error" / "Restarting consumer" lines during an outage
    the :class:`OutageLog` has already reported (one worker consumes a dozen queues, every 3 s)."""

    PREFIXES = ("Consumer encountered a connection error", "Restarting consumer")

    def __init__(self, outage: OutageLog) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.outage.active and str(record.msg).startswith(self.PREFIXES))
