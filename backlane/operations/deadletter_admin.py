"""Operating the dead-letter queues: list, requeue (one or all), purge.

Dead letters live in ``<queue>.XQ`` (see :mod:`backlane.messaging.deadletter` and
:mod:`backlane.messaging.letters`). Any message there is listed, whatever its body and
headers (one backlane cannot read is shown as its bytes and marked so). Requeueing puts a
delivery refused at the boundary (or any message backlane did not write) back exactly as
it was first published, body and properties; backlane's own failed message goes back with
its annotation and retry counters stripped, marked requeued and signed. Each is published
(confirmed) before it is removed from ``.XQ``. Messages are read over AMQP without acking, so an
interrupted command leaves every dead letter where it was.

Every command works on the dead letters a queue held when it started: it reads
the queue's count first (a passive declare) and at most that many messages. A
requeued message that fails again lands at the tail of ``.XQ`` and is not read
again by the same run (nor is any message whose id this run already requeued),
so ``requeue --all`` ends even while a worker dead-letters what it requeues.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dramatiq.errors
import pika
import pika.exceptions
from dramatiq.common import q_name, xq_name

from backlane.core.processing import ATTEMPT_OPTIONS, REQUEUED_OPTION
from backlane.errors import BacklaneError
from backlane.messaging import letters, signing
from backlane.messaging.broker_faults import refusal_of
from backlane.messaging.deadletter import UNDECODABLE_ACTOR
from backlane.messaging.publishing import Outgoing

#: What a letter is, as listed: backlane's own message that failed (``envelope``, also the
#: older letters), a delivery refused as it came (``original``), or a message backlane did
#: not write (``foreign``: RabbitMQ's own dead-lettering, any publisher to .XQ).
FORMS = ("envelope", "original", "foreign")


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    actor: str
    item: Any
    kind: str
    reason: str
    failed_at: str
    #: The Dramatiq envelope the letter holds, when it holds one ({} otherwise).
    body: dict[str, Any]
    form: str = "envelope"
    #: False when the body is no message backlane can read (shown as its bytes).
    decodable: bool = True
    raw: bytes = b""
    properties: dict[str, Any] = field(default_factory=dict)
    retries: int | None = None
    #: The original body's size when the letter holds only its head (it cannot be requeued).
    truncated: int | None = None

    def as_row(self) -> dict[str, Any]:
        row = {k: self.__dict__[k] for k in ("queue", "message_id", "actor", "item", "kind", "reason", "failed_at")}
        row["form"] = self.form
        row["decodable"] = self.decodable
        return row


def _envelope_of(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a Dramatiq-shaped envelope (a JSON object naming a string actor), or None."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("actor_name"), str):
        return None
    return body


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _item_of(envelope: dict[str, Any]) -> Any:
    args = envelope.get("args")
    if not isinstance(args, list):
        return args
    return args[0] if len(args) == 1 else args


def _foreign_reason(headers: Any) -> str:
    """Why RabbitMQ dead-lettered a message, in words, from its x-death headers."""
    reason = letters.header_text(headers, "x-first-death-reason")
    source = letters.header_text(headers, "x-first-death-queue")
    if reason is None:
        return "not written by backlane (no reason recorded)"
    words = {
        "rejected": "rejected by a consumer",
        "expired": "expired (message TTL)",
        "maxlen": "dropped for the queue's length limit",
        "delivery_limit": "delivered more times than the queue's delivery limit",
    }.get(reason, reason)
    return f"dead-lettered by RabbitMQ: {words}" + (f" in {source}" if source else "")


def parse(queue: str, raw: Any, properties: Any = None) -> DeadLetter:
    """Any message of an .XQ as a letter to show; total: any body, any properties."""
    raw = raw if isinstance(raw, bytes) else (raw.encode() if isinstance(raw, str) else b"")
    props = letters.properties_of(properties)
    headers = props.get("headers") if isinstance(props.get("headers"), dict) else {}
    form_header = letters.header_text(headers, letters.FORM)
    envelope = _envelope_of(raw)
    options = envelope.get("options") if envelope is not None else None
    options = options if isinstance(options, dict) else {}
    info = options.get("dead_letter")
    info = info if isinstance(info, dict) else {}
    message_id = _text(props.get("message_id")) or (_text(envelope.get("message_id")) if envelope else "")
    truncated = headers.get(letters.TRUNCATED)
    common = {
        "queue": q_name(queue),
        "message_id": message_id,
        "raw": raw,
        "properties": props,
        "truncated": truncated if isinstance(truncated, int) and not isinstance(truncated, bool) else None,
    }
    if form_header == letters.ORIGINAL or (form_header is None and envelope is None and not info):
        backlane = form_header == letters.ORIGINAL
        retries = headers.get(letters.RETRIES)
        return DeadLetter(
            actor=_text(envelope.get("actor_name")) if envelope else UNDECODABLE_ACTOR,
            item=_item_of(envelope) if envelope else None,
            kind=_text(letters.header_text(headers, letters.KIND), "malformed") if backlane else "foreign",
            reason=_text(letters.header_text(headers, letters.REASON)) if backlane else _foreign_reason(headers),
            failed_at=_text(letters.header_text(headers, letters.FAILED_AT)),
            body=envelope or {},
            form="original" if backlane else "foreign",
            decodable=envelope is not None or _is_text(raw),
            retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
            **common,
        )
    if envelope is None:  # an envelope-form header on a body that is none
        envelope = {}
    legacy_raw = envelope.get("actor_name") == UNDECODABLE_ACTOR and "raw_body" in options
    retries = info.get("retries")
    reason = info.get("reason")
    return DeadLetter(
        actor=_text(envelope.get("actor_name")),
        item=_item_of(envelope),
        kind=_text(info.get("kind"), "unknown"),
        reason=_text(reason) if reason is not None else _foreign_reason(headers),
        failed_at=_text(info.get("failed_at")),
        body=envelope,
        form="envelope",
        decodable=not legacy_raw and bool(envelope),
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        **common,
    )


def requeue_outgoing(letter: DeadLetter, key: bytes | None = None) -> Outgoing:
    """The message as it should re-enter its queue: a delivery refused as it came, or a foreign
    message, exactly as first published; backlane's own message as a fresh life of it (its
    attempt options dropped, marked requeued so its failed row reopens, signed)."""
    if letter.form in ("original", "foreign") or (not letter.body and letter.raw):
        props = letters.original(letter.properties)
        return Outgoing(letter.queue, letter.raw, letter.message_id or letters.new_message_id(), properties=props)
    options = letter.body.get("options") if isinstance(letter.body.get("options"), dict) else {}
    if letter.actor == UNDECODABLE_ACTOR and "raw_body" in options:  # written by backlane before 0.x: text only
        content_type = options.get("content_type")
        return Outgoing(
            letter.queue,
            str(options["raw_body"]).encode(),
            letter.message_id or letters.new_message_id(),
            properties={"delivery_mode": 2, "message_id": letter.message_id or None}
            | ({"content_type": content_type} if isinstance(content_type, str) else {}),
        )
    return Outgoing(letter.queue, requeue_body(letter, key), letter.message_id or letters.new_message_id())


def requeue_body(letter: DeadLetter, key: bytes | None = None) -> bytes:
    """Backlane's own message as it should re-enter its queue (a fresh life of it)."""
    options = letter.body.get("options") if isinstance(letter.body.get("options"), dict) else {}
    body = dict(letter.body)
    body["options"] = {k: v for k, v in options.items() if k not in ATTEMPT_OPTIONS}
    body["options"][REQUEUED_OPTION] = True
    # A requeued message starts a new life: its grace periods and age count from now.
    body["message_timestamp"] = int(time.time() * 1000)
    body["queue_name"] = letter.queue
    return json.dumps(signing.sign_envelope(body, key), separators=(",", ":"), default=str).encode()


#: Dead letters `list` shows unless told otherwise.
DEFAULT_LIST_LIMIT = 100
#: Longest text shown for one field (item, reason, raw body); longer is cut, with its size.
FIELD_LIMIT = 200


class AdminError(BacklaneError):
    """A dead-letter command could not do its work; the message is one line for the operator,
    ``status`` the exit status of the command (2: a mistake to fix, 1: RabbitMQ unavailable)."""

    kind = "admin"
    status = 1


class UnknownQueue(AdminError):
    status = 2


class BrokerUnavailable(AdminError):
    status = 1


class BrokerRefused(AdminError):
    """RabbitMQ refused our login, vhost or permission: fix BACKLANE_BROKER__URL."""

    status = 2


def clip(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars)"


def shown_body(raw: bytes, limit: int = FIELD_LIMIT) -> str:
    """A body as a person can read it: its text when it is UTF-8, else its size and first bytes in hex."""
    try:
        return clip(raw.decode("utf-8"), limit)
    except UnicodeDecodeError:
        return f"<{len(raw):,} bytes, not UTF-8: {raw[: limit // 3].hex(' ')}{'…' if len(raw) > limit // 3 else ''}>"


def shown_item(letter: DeadLetter) -> Any:
    """What to show as the letter's item: its argument, or its body when it holds no envelope."""
    if letter.actor == UNDECODABLE_ACTOR:
        options = letter.body.get("options") if isinstance(letter.body.get("options"), dict) else {}
        if "raw_body" in options:
            return str(options["raw_body"])
        return shown_body(letter.raw)
    return letter.item


def display_row(letter: DeadLetter, limit: int = FIELD_LIMIT) -> dict[str, Any]:
    """The letter as listed: every field bounded; a short item stays a JSON value."""
    row = {k: clip(v, limit) if isinstance(v, str) else v for k, v in letter.as_row().items()}
    item = shown_item(letter)
    encoded = item if isinstance(item, str) else json.dumps(item, default=str)
    row["item"] = clip(encoded, limit) if len(encoded) > limit or isinstance(item, str) else item
    if letter.truncated is not None:
        row["reason"] = clip(
            f"{letter.reason} [only the first {len(letter.raw):,} of {letter.truncated:,} bytes kept]", limit
        )
    return row


def retries_of(letter: DeadLetter) -> int | None:
    """How many times the message was retried before it was dead-lettered, when recorded."""
    return letter.retries


def deployment_queues(broker: Any) -> list[str]:
    """Every queue of this deployment (each has its .XQ), by name."""
    return sorted({actor.queue_name for actor in broker.actors.values()})


def select_queues(broker: Any, queue: str | None) -> list[str]:
    """The queues a command acts on: ``queue`` (``orders`` or ``orders.XQ``), else all of them;
    :class:`UnknownQueue` listing the deployment's queues when ``queue`` is none of them."""
    known = deployment_queues(broker)
    if queue is None:
        return known
    if queue.removesuffix(".XQ") not in known:
        raise UnknownQueue(f"no queue {queue!r} in this deployment; its queues are: {', '.join(known)}")
    return [queue.removesuffix(".XQ")]


def redact(amqp_url: str) -> str:
    """The broker URL(s) with any password replaced by ``***``."""
    shown = []
    for url in amqp_url.split(";"):
        parts = urlsplit(url.strip())
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        shown.append(urlunsplit(parts))
    return ";".join(shown)


def _why(exc: BaseException) -> str:
    """A short cause for a pika connection error (they nest the real one)."""
    inner: Any = exc
    while True:
        nested = [getattr(inner, "exception", None), *(getattr(inner, "exceptions", None) or inner.args)]
        causes = [e for e in nested if isinstance(e, BaseException)]
        if not causes:
            break
        inner = causes[-1]
    text = str(inner).strip()
    return f"{inner.__class__.__name__}: {text}" if text else inner.__class__.__name__


@contextmanager
def _connection(amqp_url: str, timeout: float | None = None) -> Iterator[Any]:
    """A connection to RabbitMQ whose failures come out as one-line :class:`AdminError`;
    ``timeout`` bounds each connection attempt, seconds."""
    setting = f"BACKLANE_BROKER__URL ({redact(amqp_url)})"
    try:
        params = [pika.URLParameters(url.strip()) for url in amqp_url.split(";") if url.strip()]
    except ValueError as exc:
        raise BrokerRefused(f"{setting} is not a valid AMQP URL: {exc}") from None
    for param in params:
        param.connection_attempts = 1
        if timeout is not None:
            param.socket_timeout = param.stack_timeout = timeout
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    if not pika_logger.isEnabledFor(logging.DEBUG):
        pika_logger.setLevel(logging.CRITICAL)  # the one-line errors below say it all (-v shows pika's)
    try:
        try:
            connection = pika.BlockingConnection(params)
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
            raise BrokerRefused(f"RabbitMQ refused the login of {setting} (user or password?): {_why(exc)}") from None
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise BrokerRefused(f"RabbitMQ denied access to the vhost of {setting}: {_why(exc)}") from None
        except (pika.exceptions.AMQPError, OSError) as exc:  # OSError: e.g. a host name that does not resolve
            refusal = refusal_of(exc)
            if refusal is not None:
                raise BrokerRefused(f"RabbitMQ refused access ({refusal}): fix {setting}") from None
            raise BrokerUnavailable(f"RabbitMQ unreachable at {setting}: {_why(exc)}: is it running?") from None
        try:
            yield connection
        except (pika.exceptions.AMQPConnectionError, dramatiq.errors.ConnectionError) as exc:
            raise BrokerUnavailable(f"lost the connection to RabbitMQ at {setting}: {_why(exc)}") from None
        except pika.exceptions.AMQPChannelError as exc:
            raise BrokerUnavailable(f"RabbitMQ refused an operation ({setting}): {_why(exc)}") from None
        finally:
            if connection.is_open:
                connection.close()  # unacked messages go back to their queue, in order
    finally:
        pika_logger.setLevel(level)


def _count(connection: Any, queue: str, missing_ok: bool) -> int | None:
    """Dead letters in ``queue``'s .XQ now (None when it does not exist and that is fine)."""
    name = xq_name(q_name(queue))
    channel = connection.channel()  # of its own: a 404 closes the channel it happens on
    try:
        count = int(channel.queue_declare(name, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        if missing_ok:
            return None
        raise UnknownQueue(
            f"no dead-letter queue {name!r} on RabbitMQ: is {q_name(queue)!r} a queue of this deployment? "
            "If it is, run `backlane declare-queues` to create it"
        ) from None
    channel.close()
    return count


def _each(channel: Any, queue: str, limit: int) -> Iterator[tuple[int, DeadLetter]]:
    """At most ``limit`` dead letters of ``queue``, unacked (they stay on the broker until acked
    or returned)."""
    for _ in range(limit):
        method, props, raw = channel.basic_get(xq_name(q_name(queue)), auto_ack=False)
        if method is None:
            return
        yield method.delivery_tag, parse(queue, raw, props)


def _return_all(channel: Any) -> None:
    """Give back every letter read on ``channel`` explicitly (``basic.nack`` with requeue)
    rather than by closing it: on RabbitMQ 4.3+ an explicit return does not count toward a
    quorum queue's delivery limit, a channel closed with them unacked does (SCALING.md)."""
    with contextlib.suppress(pika.exceptions.AMQPError):
        if channel.is_open:
            channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)


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
) -> list[Listing]:
    """At most ``limit`` dead letters over ``queues``, with how many each queue holds; consumes nothing.

    A queue whose .XQ does not exist is skipped when ``missing_ok``, else :class:`UnknownQueue`."""
    listings: list[Listing] = []
    with _connection(amqp_url, timeout) as connection:
        channel = connection.channel()
        remaining = max(limit, 0)
        for queue in queues:
            total = _count(connection, queue, missing_ok)
            if total is None:
                continue
            read = [letter for _tag, letter in _each(channel, queue, min(total, remaining))]
            remaining -= len(read)
            listings.append(Listing(xq_name(q_name(queue)), total, read))
        _return_all(channel)
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
    report = RequeueReport()
    try:
        _requeue(report, broker, amqp_url, queues, matches, first_only, missing_ok, timeout)
    except BrokerUnavailable as exc:
        if report.requeued:
            raise BrokerUnavailable(
                f"{exc} (after requeueing {len(report.requeued):,}; every other dead letter is still in its .XQ)"
            ) from None
        raise
    return report


def _requeue(
    report: RequeueReport,
    broker: Any,
    amqp_url: str,
    queues: list[str],
    matches: Callable[[DeadLetter], bool],
    first_only: bool,
    missing_ok: bool,
    timeout: float | None = None,
) -> None:
    done_ids: set[str] = set()
    with _connection(amqp_url, timeout) as connection:
        channel = connection.channel()
        try:
            _requeue_on(report, channel, connection, broker, queues, matches, first_only, missing_ok, done_ids)
        finally:
            _return_all(channel)  # the ones left in place, explicitly


def _requeue_on(
    report: RequeueReport,
    channel: Any,
    connection: Any,
    broker: Any,
    queues: list[str],
    matches: Callable[[DeadLetter], bool],
    first_only: bool,
    missing_ok: bool,
    done_ids: set[str],
) -> None:
    for queue in queues:
        total = _count(connection, queue, missing_ok)
        if total is None:
            continue
        report.in_queue[xq_name(q_name(queue))] = total
        for tag, letter in _each(channel, queue, total):
            if letter.message_id and letter.message_id in done_ids:
                report.repeated += 1
                continue
            if not matches(letter):
                report.not_matching += 1
                continue
            if letter.truncated is not None:
                report.truncated += 1
                continue
            broker.declare_queue(letter.queue, ensure=True)
            broker.publish([requeue_outgoing(letter, signing.broker_key(broker))])
            channel.basic_ack(tag)  # only once the message is safely back on its queue
            report.requeued.append(letter)
            if letter.message_id:
                done_ids.add(letter.message_id)
            if first_only:
                return


def purge(
    amqp_url: str, queues: list[str], *, missing_ok: bool = False, timeout: float | None = None
) -> dict[str, int]:
    counts = {}
    with _connection(amqp_url, timeout) as connection:
        for queue in queues:
            if _count(connection, queue, missing_ok) is None:
                continue
            channel = connection.channel()
            result = channel.queue_purge(xq_name(q_name(queue)))
            counts[q_name(queue)] = result.method.message_count
            channel.close()
    return counts
