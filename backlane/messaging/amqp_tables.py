"""pika's AMQP field-table decoder, bounded in depth.

A delivery's headers are a field table whose values may be tables and arrays, nested as deep
as a publisher likes: a few KB of headers nested ~490 levels made pika's recursive decoder
raise RecursionError inside the consumer's connection (measured: pika reports it as a lost
stream, the worker as "RabbitMQ ... is unreachable", the consumer reconnects every 3 s and
RabbitMQ delivers the same message again at the head of the queue, stalling it for every
worker). That happens before :func:`backlane.messaging.intake.admit` sees the delivery, so
the decoder itself is bounded here: a table or array deeper than :data:`MAX_DEPTH` is skipped
by its length prefix and replaced by :data:`CUT`, which ``admit`` refuses in words.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import pika.data

#: Deepest nesting of tables and arrays inside a header table that is decoded.
MAX_DEPTH = 64


class Cut(str):
    """What stands in for a table or array nested deeper than :data:`MAX_DEPTH`."""


CUT = Cut(f"<AMQP table nested deeper than {MAX_DEPTH} levels, not decoded>")

_state = threading.local()
_original: Callable[[bytes, int], tuple[Any, int]] | None = None


def _bounded_decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    assert _original is not None
    kind = encoded[offset : offset + 1]
    if kind not in (b"F", b"A"):
        return _original(encoded, offset)
    depth = getattr(_state, "depth", 0)
    if depth >= MAX_DEPTH:
        # Both are a 4-byte length then that many bytes: skipped without reading them.
        (length,) = struct.unpack_from(">I", encoded, offset + 1)
        return CUT, offset + 5 + length
    _state.depth = depth + 1
    try:
        return _original(encoded, offset)
    finally:
        _state.depth = depth


def install() -> None:
    """Bound pika's decoding of nested tables and arrays in this process (idempotent).

    pika's ``decode_table`` and ``decode_value`` call each other through the module's
    globals, so replacing ``pika.data.decode_value`` bounds every nested value."""
    global _original
    if _original is None:
        _original = pika.data.decode_value
        pika.data.decode_value = _bounded_decode_value


def holds_cut(value: Any) -> bool:
    """Whether decoded headers had a part nested too deeply to decode."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, Cut):
            return True
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False
