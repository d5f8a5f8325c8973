"""A dead letter as a person reads it, in ``backlane dead-letters list`` and on the dashboard.

Every field is bounded (:data:`FIELD_LIMIT`): a letter may hold megabytes, or bytes that are
no text, and is still one line of a listing (the CLI and the dashboard escape what is shown).
"""

from __future__ import annotations

import json
from typing import Any

from backlane.core.log_limits import cut
from backlane.messaging.deadletter import UNDECODABLE_ACTOR
from backlane.operations.dead_letters.letter import DeadLetter

#: Longest text shown for one field (item, reason, raw body); longer is cut, with its size
#: (:func:`backlane.core.log_limits.cut`).
FIELD_LIMIT = 200


def shown_body(raw: bytes, limit: int = FIELD_LIMIT) -> str:
    """A body as a person can read it: its text when it is UTF-8, else its size and first bytes in hex."""
    try:
        return cut(raw.decode("utf-8"), limit)
    except UnicodeDecodeError:
        return f"<{len(raw):,} bytes, not UTF-8: {raw[: limit // 3].hex(' ')}{'…' if len(raw) > limit // 3 else ''}>"


def shown_item(letter: DeadLetter) -> Any:
    """What to show as the letter's item: its argument, or its body when it holds no envelope."""
    if letter.actor == UNDECODABLE_ACTOR:
        if letter.legacy_raw_body:
            return str(letter.options["raw_body"])
        return shown_body(letter.raw)
    return letter.item


def display_row(letter: DeadLetter, limit: int = FIELD_LIMIT) -> dict[str, Any]:
    """The letter as listed: every field bounded; a short item stays a JSON value."""
    row = {k: cut(v, limit) if isinstance(v, str) else v for k, v in letter.as_row().items()}
    item = shown_item(letter)
    encoded = item if isinstance(item, str) else json.dumps(item, default=str)
    row["item"] = cut(encoded, limit) if len(encoded) > limit or isinstance(item, str) else item
    if letter.truncated is not None:
        row["reason"] = cut(
            f"{letter.reason} [only the first {len(letter.raw):,} of {letter.truncated:,} bytes kept]", limit
        )
    return row


def retries_of(letter: DeadLetter) -> int | None:
    """How many times the message was retried before it was dead-lettered, when recorded."""
    return letter.retries
