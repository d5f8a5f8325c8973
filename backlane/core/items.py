"""Checking the item a message names, before any work: a bad one is a malformed message."""

from __future__ import annotations

from typing import Any

from backlane.errors import MalformedMessage


def is_row_id(item: Any) -> bool:
    """Whether ``item`` can name a row: a positive integer (``True`` is not one)."""
    return isinstance(item, int) and not isinstance(item, bool) and item > 0


def row_id(item: Any, what: str) -> int:
    """The item as a row id, or :class:`MalformedMessage` naming what it should have been."""
    if not is_row_id(item):
        raise MalformedMessage(f"{what} items are positive integer row ids, got {item!r}")
    return int(item)
