"""Bounded log lines: no message body or item is ever logged whole.

A 5 MB message used to be logged twice (the outcome line and Dramatiq's
"Failed to process message …" line, which prints every argument), which fills
disks and log pipelines with one bad publish. :func:`cut` bounds one value;
:func:`install` bounds every log record of the process, Dramatiq's included,
by installing a record factory (handlers and formatters stay the user's).
"""

from __future__ import annotations

import json
import logging
from typing import Any

#: Longest log message kept whole, characters; a longer one is cut and says so.
MAX_LOG_CHARS = 2000
#: Longest single value (item, reason, body) shown in an outcome line or a listing.
MAX_VALUE_CHARS = 300


def cut(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` itself when short enough, else its head and how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars, cut)"


def cut_value(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``value`` as it is when its JSON is short enough (ids, small dicts), else a cut string."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return value if len(text) <= limit else cut(text, limit)


class _BoundedRecord(logging.LogRecord):
    def getMessage(self) -> str:
        return cut(super().getMessage(), MAX_LOG_CHARS)


def install() -> None:
    """Bound every log record of this process (idempotent)."""
    if logging.getLogRecordFactory() is not _BoundedRecord:
        logging.setLogRecordFactory(_BoundedRecord)
