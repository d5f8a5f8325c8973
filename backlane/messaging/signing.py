"""Which actor may run on which queue, and which message options backlane honours.

Anyone who can publish to a queue of backlane's (every service sending OrderCreated) can
write any Dramatiq envelope. Left alone, the worker would run any registered actor named in
it and obey every option it carries: ``backlane_pending_failure`` marks a row failed with
the sender's reason, ``backlane_requeued`` reopens a failed row, ``pipe_target`` or
``on_success`` run a second message of the sender's choice, ``max_retries`` or ``eta`` change
how the item is tried. So a delivery is admitted (:func:`checked`) only when

* its actor belongs to the consumed queue (an inbox queue its inbox actor, a work queue and
  its ``.DQ`` its per-item actor, ``discover`` the discover actors), and
* its options were written by backlane: every message backlane publishes with options
  (Dramatiq's retries and delays, the worker moving a message from ``.DQ`` to its queue,
  periodiq's ticks, a requeued dead letter) carries ``backlane_signature``, an HMAC-SHA256
  of the whole envelope (queue, actor, arguments, options, id, timestamp) under the
  deployment's key (:func:`key_of`). The broker signs in its enqueue path
  (:func:`sign_message`), after every middleware had its say, right before the body is
  encoded. A message without a valid signature that carries an option something in the
  worker reads (:data:`CONTROLLED_OPTIONS`) is refused; its other options are dropped,
  except the few harmless ones in :data:`WIRE_OPTIONS`.

Messages the MassTransit adapter builds carry the option ``masstransit``; the adapter, not
the sender, wrote them (no field of a MassTransit envelope becomes an option), so they are
taken as built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from dramatiq.common import q_name
from dramatiq.message import Message

from backlane.core.log_limits import cut
from backlane.core.options import (
    FAILURES_OPTION,
    PAUSED_OPTION,
    PENDING_FAILURE_OPTION,
    REQUEUED_OPTION,
    SIGNATURE_OPTION,
    WAITS_OPTION,
)
from backlane.observability import carrier

if TYPE_CHECKING:
    from dramatiq.broker import Broker

    from backlane.settings import Settings

#: Options something in a worker reads (backlane, Dramatiq's middleware and worker, periodiq,
#: the MassTransit adapter): honoured only on a message backlane signed, else a refusal.
CONTROLLED_OPTIONS = frozenset(
    {
        # backlane's bookkeeping (backlane.core.processing, the dead-letter path, the adapter)
        FAILURES_OPTION,
        WAITS_OPTION,
        PENDING_FAILURE_OPTION,
        PAUSED_OPTION,
        REQUEUED_OPTION,
        "backlane_delays",  # processing's count of named waits in a row (retries.max_waits)
        carrier.FIRST_ATTEMPT,  # the tracing middleware's link from a retry to its first attempt
        "dead_letter",
        "masstransit",
        # Dramatiq's Retries bookkeeping, its delay queues, periodiq's ticks
        "retries",
        "traceback",
        "requeue_timestamp",
        "eta",
        "scheduled_at",
        # what Dramatiq's middleware and worker read from a message
        "max_retries",
        "min_backoff",
        "max_backoff",
        "retry_when",
        "throws",
        "time_limit",
        "max_age",
        "on_success",
        "on_failure",
        "on_retry_exhausted",
        "pipe_target",
        "pipe_ignore",
        "notify_shutdown",
        "broker_priority",
        "group_completion_uuid",
        "group_completion_callbacks",
        "delay",
    }
)
#: Options an unsigned message may keep: the W3C trace context another service's publish continues
#: in (:mod:`backlane.observability.carrier`; it decides only a span's parent, and a malformed one
#: is ignored). Add one here only if nothing in a worker acts on it.
WIRE_OPTIONS: frozenset[str] = frozenset({carrier.TRACEPARENT, carrier.TRACESTATE})
#: The options a requeued dead letter keeps (:func:`sign_envelope`): "requeued by an operator"
#: and the MassTransit origin, which nothing acts on. A fresh life needs nothing else.
REQUEUE_OPTIONS = frozenset({REQUEUED_OPTION, "masstransit"})
#: Domains of backlane's keys and signatures, so neither is valid for anything else.
_KEY_CONTEXT = b"backlane message signing key v1"
_SIGNATURE_CONTEXT = b"backlane message v1\n"


def key_of(settings: Settings) -> bytes:
    """The signing key: derived from ``messages.signing_key`` when set, else from the database
    URL (every backlane process of a deployment has it; the services publishing to RabbitMQ
    do not). Never logged."""
    configured = settings.messages.signing_key
    secret = configured.get_secret_value() if configured is not None else settings.database.url.get_secret_value()
    return hmac.new(_KEY_CONTEXT, secret.encode(), hashlib.sha256).digest()


#: The key of the installed runtime's settings (set by :func:`set_default_key` at install).
_installed_key: bytes | None = None


def set_default_key(key: bytes | None) -> None:
    """What a broker built without a key signs with: the installed runtime's (called by
    :func:`backlane.core.runtime.install`, so this module imports no runtime)."""
    global _installed_key
    _installed_key = key


def default_key() -> bytes:
    """This process's key: the installed runtime's, else from the environment as it is now.
    Never from the cached :func:`~backlane.settings.get_settings`: reading (and so freezing)
    the environment here, at a broker's first publish, could fix the settings before the
    process (or a test) has set them up."""
    if _installed_key is not None:
        return _installed_key
    from backlane.settings import load_settings

    return key_of(load_settings())


def broker_key(broker: Broker) -> bytes:
    """The key ``broker`` signs with: its own, or (a broker built without one) the process's,
    worked out once and kept on the broker."""
    key = getattr(broker, "signing_key", None)
    if isinstance(key, bytes) and key:
        return key
    key = default_key()
    with contextlib.suppress(AttributeError):  # a broker that takes no attributes: work it out each time
        broker.signing_key = key  # type: ignore[attr-defined]
    return key


def _canonical(value: Any) -> bytes:
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError:  # e.g. dict keys of mixed types: sign what the wire will carry
        text = json.dumps(json.loads(json.dumps(value)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", errors="surrogatepass")


def signature(key: bytes, queue_name: str, fields: dict[str, Any], options: dict[str, Any]) -> str:
    """HMAC-SHA256 over everything the worker acts on: the queue the message travels on, its
    actor, arguments, id, timestamp and ``options`` (any signature among them left out)."""
    document = [
        queue_name,
        fields.get("actor_name"),
        list(fields.get("args") or ()),
        fields.get("kwargs"),
        {k: v for k, v in options.items() if k != SIGNATURE_OPTION},
        fields.get("message_id"),
        fields.get("message_timestamp"),
    ]
    return hmac.new(key, _SIGNATURE_CONTEXT + _canonical(document), hashlib.sha256).hexdigest()


def sign_message(broker: Broker, message: Message) -> None:
    """Sign ``message`` in place, about to be published to ``message.queue_name`` (its options are
    a dict of its own: Dramatiq copies a message before it delays it). One without options needs
    no signature: it runs as any publisher's would."""
    options = message.options
    options.pop(SIGNATURE_OPTION, None)
    if not options:
        return
    options[SIGNATURE_OPTION] = signature(broker_key(broker), message.queue_name, message.asdict(), options)


def sign_envelope(envelope: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """``envelope`` (a dead letter being requeued to its ``queue_name``, as a dict) signed, so a
    worker honours its options; an old signature is dropped, and so is every option but
    :data:`REQUEUE_OPTIONS`: anyone who may publish to an ``.XQ`` could have written the letter,
    and a requeue must not sign what they chose. Its id and timestamp are filled in when
    missing: they are signed."""
    signed = dict(envelope)
    given = signed.get("options")
    options = {k: v for k, v in given.items() if k in REQUEUE_OPTIONS} if isinstance(given, dict) else {}
    if options:
        fresh: Message[Any] = Message(queue_name="", actor_name="", args=(), kwargs={}, options={})
        signed.setdefault("message_id", fresh.message_id)
        signed.setdefault("message_timestamp", fresh.message_timestamp)
        queue = str(signed.get("queue_name", ""))
        options[SIGNATURE_OPTION] = signature(key or default_key(), queue, signed, options)
    signed["options"] = options
    return signed


def actor_problem(broker: Broker, queue_name: str, message: Message) -> str | None:
    """Why ``message``'s actor may not run on ``queue_name`` (a ``.DQ`` counts as its queue)."""
    actor = broker.actors.get(message.actor_name)
    if actor is None or q_name(actor.queue_name) != q_name(queue_name):
        return f"actor {cut(str(message.actor_name), 100)!r} does not belong to queue {queue_name!r}"
    return None


def checked(
    broker: Broker, queue_name: str, message: Message, *, built_here: bool = False
) -> tuple[str | None, Message]:
    """(None, the message as it may run) or (why it is refused, the message as it came).

    ``built_here``: the MassTransit adapter built ``message`` (its options are the adapter's)."""
    problem = actor_problem(broker, queue_name, message)
    if problem is not None:
        return problem, message
    options = message.options
    if built_here or not options:
        return None, message
    given = options.get(SIGNATURE_OPTION)
    if isinstance(given, str):
        expected = signature(broker_key(broker), queue_name, message.asdict(), options)
        if hmac.compare_digest(given, expected):
            return None, _with_options(message, {k: v for k, v in options.items() if k != SIGNATURE_OPTION})
    controlled = sorted(str(k) for k in options if k in CONTROLLED_OPTIONS)
    if controlled:
        why = "its signature does not match" if given is not None else "this message is not signed by it"
        return f"option {cut(controlled[0], 100)} is set only by backlane; {why}", message
    kept = {k: v for k, v in options.items() if k in WIRE_OPTIONS}
    return None, message if len(kept) == len(options) else _with_options(message, kept)


def problem_of(broker: Broker, queue_name: str, message: Message) -> str | None:
    """Why ``message`` may not run on ``queue_name`` (wrong actor, forged options), or None."""
    return checked(broker, queue_name, message)[0]


def _with_options(message: Message, options: dict[str, Any]) -> Message:
    return dataclasses.replace(message, options=options)
