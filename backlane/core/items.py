"""Checking the item a message names, before any work: a bad one is a malformed message."""

from __future__ import annotations

from typing import Any

from backlane.errors import MalformedMessage


def row_id(item: Any, what: str) -> int:
    """The item as a row id: a positive integer (``True`` is not one)."""
    if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
        raise MalformedMessage(f"a {what} item must be a positive integer id, got {item!r}")
    return item
