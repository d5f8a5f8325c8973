"""A dead letter as an operator sees it, and the message that requeueing it publishes.

:func:`parse` reads any message of a ``<queue>.XQ`` (whatever its body and headers) as a
:class:`DeadLetter`; it never raises. :func:`requeue_outgoing` is what goes back on the
queue: a delivery refused at the boundary (or any message backlane did not write) exactly
as it was first published, body and properties (:func:`backlane.messaging.letters.original`);
backlane's own failed message as a fresh life of it, its annotation and retry counters
stripped, marked requeued and signed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from dramatiq.common import q_name

from backlane.core.processing import ATTEMPT_OPTIONS, REQUEUED_OPTION
from backlane.messaging import letters, signing
from backlane.messaging.deadletter import UNDECODABLE_ACTOR
from backlane.messaging.publishing import Outgoing

#: What a letter is, as listed: backlane's own message that failed (``envelope``, also the
#: older letters), a delivery refused as it came (``original``), or a message backlane did
#: not write (``foreign``: RabbitMQ's own dead-lettering, any publisher to .XQ).
FORMS = ("envelope", "original", "foreign")


@dataclass(frozen=True)
class DeadLetter:
    """One message of an ``.XQ`` as read (:func:`parse`): what it was, why it died, and its bytes."""

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

    @property
    def options(self) -> dict[str, Any]:
        """The envelope's options ({} when it has none, or none that are a table)."""
        return _table(self.body.get("options"))

    @property
    def legacy_raw_body(self) -> bool:
        """A letter of an undecodable body as backlane wrote them before 0.x: its text in the options."""
        return self.actor == UNDECODABLE_ACTOR and "raw_body" in self.options

    def as_row(self) -> dict[str, Any]:
        row = {k: self.__dict__[k] for k in ("queue", "message_id", "actor", "item", "kind", "reason", "failed_at")}
        row["form"] = self.form
        row["decodable"] = self.decodable
        return row


def _table(value: Any) -> dict[str, Any]:
    """``value`` when it is a table (a dict), else an empty one: letters come from anyone."""
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    """``value`` when it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    headers = _table(props.get("headers"))
    form_header = letters.header_text(headers, letters.FORM)
    envelope = _envelope_of(raw)
    options = _table(envelope.get("options")) if envelope is not None else {}
    info = _table(options.get("dead_letter"))
    message_id = _text(props.get("message_id")) or (_text(envelope.get("message_id")) if envelope else "")
    common = {
        "queue": q_name(queue),
        "message_id": message_id,
        "raw": raw,
        "properties": props,
        "truncated": _count(headers.get(letters.TRUNCATED)),
    }
    if form_header == letters.ORIGINAL or (form_header is None and envelope is None and not info):
        backlane = form_header == letters.ORIGINAL
        return DeadLetter(
            actor=_text(envelope.get("actor_name")) if envelope else UNDECODABLE_ACTOR,
            item=_item_of(envelope) if envelope else None,
            kind=_text(letters.header_text(headers, letters.KIND), "malformed") if backlane else "foreign",
            reason=_text(letters.header_text(headers, letters.REASON)) if backlane else _foreign_reason(headers),
            failed_at=_text(letters.header_text(headers, letters.FAILED_AT)),
            body=envelope or {},
            form="original" if backlane else "foreign",
            decodable=envelope is not None or _is_text(raw),
            retries=_count(headers.get(letters.RETRIES)),
            **common,
        )
    if envelope is None:  # an envelope-form header on a body that is none
        envelope = {}
    legacy_raw = envelope.get("actor_name") == UNDECODABLE_ACTOR and "raw_body" in options
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
        retries=_count(info.get("retries")),
        **common,
    )


def requeue_outgoing(letter: DeadLetter, key: bytes | None = None) -> Outgoing:
    """The message as it should re-enter its queue: a delivery refused as it came, or a foreign
    message, exactly as first published; backlane's own message as a fresh life of it (its
    attempt options dropped, marked requeued so its failed row reopens, signed)."""
    message_id = letter.message_id or letters.new_message_id()
    if letter.form in ("original", "foreign") or (not letter.body and letter.raw):
        return Outgoing(letter.queue, letter.raw, message_id, properties=letters.original(letter.properties))
    if letter.legacy_raw_body:  # written by backlane before 0.x: text only
        content_type = letter.options.get("content_type")
        return Outgoing(
            letter.queue,
            str(letter.options["raw_body"]).encode(),
            message_id,
            properties={"delivery_mode": 2, "message_id": letter.message_id or None}
            | ({"content_type": content_type} if isinstance(content_type, str) else {}),
        )
    return Outgoing(letter.queue, requeue_body(letter, key), message_id)


def requeue_body(letter: DeadLetter, key: bytes | None = None) -> bytes:
    """Backlane's own message as it should re-enter its queue (a fresh life of it)."""
    body = dict(letter.body)
    body["options"] = {k: v for k, v in letter.options.items() if k not in ATTEMPT_OPTIONS}
    body["options"][REQUEUED_OPTION] = True
    # A requeued message starts a new life: its grace periods and age count from now.
    body["message_timestamp"] = int(time.time() * 1000)
    body["queue_name"] = letter.queue
    return json.dumps(signing.sign_envelope(body, key), separators=(",", ":"), default=str).encode()
