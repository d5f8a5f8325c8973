"""pika's header decoding is bounded in depth: a table nested past MAX_DEPTH is cut, not a
RecursionError in the consumer's connection (which stalled the queue for every worker)."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from pika import spec

from backlane.messaging import amqp_tables
from backlane.messaging.intake import properties_problem

amqp_tables.install()


def nested_table(depth: int) -> bytes:
    """A header table ``{"a": {"a": … {"x": 1}}}`` ``depth`` levels deep, encoded by hand
    (pika's own encoder recurses too: it cannot write one this deep)."""
    table = struct.pack(">I", 4) + b"\x01xb\x01"
    for _ in range(depth):
        entry = b"\x01aF" + table
        table = struct.pack(">I", len(entry)) + entry
    return table


def nested_array(depth: int) -> bytes:
    array = struct.pack(">I", 2) + b"b\x01"
    for _ in range(depth):
        array = struct.pack(">I", len(array) + 1) + b"A" + array
    entry = b"\x01hA" + array
    return struct.pack(">I", len(entry)) + entry


def decoded(headers_table: bytes, message_id: bytes = b"") -> spec.BasicProperties:
    flags = spec.BasicProperties.FLAG_HEADERS
    tail = b""
    if message_id:
        flags |= spec.BasicProperties.FLAG_MESSAGE_ID
        tail = bytes([len(message_id)]) + message_id
    properties = spec.BasicProperties()
    properties.decode(struct.pack(">H", flags) + headers_table + tail)
    return properties


def test_a_table_nested_thousands_deep_is_cut_and_the_rest_decoded() -> None:
    for depth in (amqp_tables.MAX_DEPTH + 1, 490, 20_000):
        properties = decoded(nested_table(depth), message_id=b"after-the-headers")
        assert amqp_tables.holds_cut(properties.headers)
        assert properties.message_id == "after-the-headers", "the bytes after the cut table are read in place"
        problem = properties_problem(SimpleNamespace(content_type=None, headers=properties.headers, message_id=None))
        assert problem is not None and "deeper than 64 levels" in problem


def test_arrays_are_bounded_too() -> None:
    assert amqp_tables.holds_cut(decoded(nested_array(5_000)).headers)


def test_headers_within_the_bound_are_decoded_unchanged() -> None:
    assert not amqp_tables.holds_cut(decoded(nested_table(amqp_tables.MAX_DEPTH)).headers)
    headers = {"MT-MessageType": "urn:message:A:B", "nested": {"list": [1, "two", {"three": 3}]}, "none": None}
    properties = spec.BasicProperties(headers=headers, message_id="m-1", content_type="application/json")
    again = spec.BasicProperties()
    again.decode(b"".join(properties.encode()))
    assert (again.headers, again.message_id, again.content_type) == (headers, "m-1", "application/json")


def test_the_bound_holds_at_the_default_recursion_limit() -> None:
    decoded(nested_table(100_000))  # would be a RecursionError without the bound
