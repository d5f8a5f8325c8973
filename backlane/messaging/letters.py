"""The dead-letter codec: a refused delivery as a letter in ``.XQ``, and back, byte for byte.

A delivery refused at the boundary (not an envelope, a foreign actor, forged options, a
MassTransit message that cannot be taken) was written by a publisher backlane does not
control; the operator who requeues it after fixing the cause wants *that* message back,
not backlane's reading of it. So its letter is the original body, unchanged, with the
original properties (content type and encoding, headers, message id, correlation id, type,
...), and backlane's annotation only in ``x-backlane-*`` headers (:func:`encode`).
:func:`original` undoes it exactly: the annotation and the headers RabbitMQ adds to a
message it holds or dead-letters (``x-death``, ``x-delivery-count``...) removed, what the
letter had to change restored:

* an original header whose name collides with those (``x-backlane-*``, ``x-death``...) is
  kept under :data:`SHADOWED` and put back;
* the letter is persistent and never expires (a transient or expiring letter would be
  lost): the original ``delivery_mode`` and ``expiration`` are kept under :data:`KEPT`;
* a letter always has a message id (so ``requeue --message-id`` can name it) and headers;
  the ones backlane filled in are listed in :data:`ADDED` and dropped again.

Everything here is total over any body and any property table: nothing raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Prefix of every header backlane adds to a letter.
PREFIX = "x-backlane-"
#: Which form a letter is in: :data:`ORIGINAL` (a refused delivery, byte-exact) or
#: :data:`ENVELOPE` (backlane's own message that failed: a Dramatiq envelope).
FORM = "x-backlane-letter"
ORIGINAL = "original"
ENVELOPE = "envelope"
KIND, REASON, QUEUE, FAILED_AT, RETRIES = (f"{PREFIX}{n}" for n in ("kind", "reason", "queue", "failed-at", "retries"))
#: The headers that say why a letter died (what a person reads).
ANNOTATION_NAMES = (FORM, KIND, REASON, QUEUE, FAILED_AT, RETRIES)
#: Original headers whose names the letter reserves, by name.
SHADOWED = "x-backlane-shadowed"
#: Original delivery_mode / expiration, which the letter cannot keep as they were.
KEPT = "x-backlane-kept"
#: Space-separated names of the properties the original did not have and the letter does.
ADDED = "x-backlane-added"
#: Set when the letter holds only the head of the body (the whole would not fit in RabbitMQ):
#: the original body's length in bytes. Such a letter cannot be requeued.
TRUNCATED = "x-backlane-truncated"
#: Headers RabbitMQ itself writes on a message it dead-letters or redelivers.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-last-death-exchange",
    }
)
#: Longest reason a letter carries, characters; a longer one is cut and says so.
REASON_LIMIT = 1000
#: AMQP 0-9-1 basic properties, in pika's names.
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
#: Longest AMQP short string (message id, content type, a table's keys...), bytes.
SHORTSTR_LIMIT = 255


@dataclass(frozen=True)
class Annotation:
    """Why a message was dead-lettered, as the letter's headers say it."""

    kind: str
    reason: str
    queue: str
    failed_at: str = ""
    retries: int = 0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def bounded_reason(reason: object, limit: int = REASON_LIMIT) -> str:
    """``reason`` as text of at most ``limit`` characters (plus a note of the cut)."""
    text = reason if isinstance(reason, str) else str(reason)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars, cut)"


def is_shortstr(value: object) -> bool:
    """True for a string AMQP can carry as a short string (at most 255 bytes of UTF-8)."""
    if not isinstance(value, str):
        return False
    try:
        return len(value.encode("utf-8")) <= SHORTSTR_LIMIT
    except UnicodeEncodeError:  # lone surrogates
        return False


def properties_of(source: Any) -> dict[str, Any]:
    """The properties that are set, from pika's BasicProperties, a mapping or None."""
    props: dict[str, Any] = {}
    for name in PROPERTY_NAMES:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value is not None:
            props[name] = value
    return props


def _reserved(name: object) -> bool:
    return isinstance(name, str) and (name.startswith(PREFIX) or name in BROKER_HEADERS)


def new_message_id() -> str:
    return f"dead-letter-{uuid.uuid4().hex}"


def encode(
    body: bytes, original: Any, annotation: Annotation, *, message_id: str | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The letter for a delivery refused as it came: (the body unchanged, its properties).

    ``message_id`` names a letter whose original has none (e.g. the id inside its envelope);
    a fresh one when it is missing or not a valid AMQP short string."""
    props = properties_of(original)
    added: list[str] = []
    kept: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    shadowed: dict[str, Any] = {}
    given = props.get("headers")
    if isinstance(given, Mapping):
        for name, value in given.items():
            (shadowed if _reserved(name) else headers)[name] = value
    else:
        added.append("headers")
    if props.get("delivery_mode") != 2:
        if "delivery_mode" in props:
            kept["delivery_mode"] = props["delivery_mode"]
        else:
            added.append("delivery_mode")
    if "expiration" in props:
        kept["expiration"] = props.pop("expiration")
    if "message_id" not in props:
        props["message_id"] = message_id if is_shortstr(message_id) and message_id else new_message_id()
        added.append("message_id")
    headers.update(annotation_headers(annotation, ORIGINAL))
    if shadowed:
        headers[SHADOWED] = shadowed
    if kept:
        headers[KEPT] = kept
    if added:
        headers[ADDED] = " ".join(added)
    props["headers"] = headers
    props["delivery_mode"] = 2
    return body, props


def annotation_headers(annotation: Annotation, form: str) -> dict[str, Any]:
    return {
        FORM: form,
        KIND: bounded_reason(annotation.kind, 100),
        REASON: bounded_reason(annotation.reason),
        QUEUE: annotation.queue,
        FAILED_AT: annotation.failed_at or now(),
        RETRIES: int(annotation.retries) if isinstance(annotation.retries, int) else 0,
    }


def truncated(body: bytes, props: dict[str, Any], keep: int) -> tuple[bytes, dict[str, Any]]:
    """The letter holding only the first ``keep`` bytes of ``body``, saying how long it was."""
    headers = dict(props.get("headers") or {})
    headers[TRUNCATED] = len(body)
    return body[:keep], {**props, "headers": headers}


def original(props: Any) -> dict[str, Any]:
    """The properties of the message a letter holds, as first published: everything
    :func:`encode` and RabbitMQ added removed, what the letter changed restored. For a letter
    not written by :func:`encode` (RabbitMQ's own dead-lettering), its properties without
    RabbitMQ's and backlane's headers."""
    result = properties_of(props)
    headers = result.get("headers")
    if not isinstance(headers, Mapping):
        return result
    restored = {k: v for k, v in headers.items() if not _reserved(k)}
    if headers.get(FORM) != ORIGINAL:
        result["headers"] = restored
        return result
    shadowed = headers.get(SHADOWED)
    if isinstance(shadowed, Mapping):
        restored.update(shadowed)
    result["headers"] = restored
    kept = headers.get(KEPT)
    if isinstance(kept, Mapping):
        for name in ("delivery_mode", "expiration"):
            if name in kept:
                result[name] = kept[name]
    added = headers.get(ADDED)
    if isinstance(added, bytes):
        added = added.decode("utf-8", "replace")
    for name in added.split() if isinstance(added, str) else ():
        if name in PROPERTY_NAMES:
            result.pop(name, None)
    return result


def header_text(headers: Any, name: str) -> str | None:
    """A header's value as text, or None when absent (any type tolerated)."""
    if not isinstance(headers, Mapping) or name not in headers:
        return None
    value = headers[name]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


__all__ = [
    "ADDED",
    "ENVELOPE",
    "FORM",
    "KEPT",
    "ORIGINAL",
    "SHADOWED",
    "TRUNCATED",
    "Annotation",
    "annotation_headers",
    "bounded_reason",
    "encode",
    "is_shortstr",
    "original",
    "properties_of",
    "truncated",
]
