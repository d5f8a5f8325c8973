"""What the ``backlane`` command prints is text, never terminal commands.

Dead-letter reasons, message ids, export errors and queue names come from publishers, upstream
APIs and the database: a ``\\x1b]...\\x07`` in one of them, printed raw, would retitle the
operator's terminal, rewrite the screen above it or (on some terminals) write files. Every
line the command prints goes through :func:`escape_controls`, which shows each control
character as a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``): C0 and C1 controls, ESC, BEL,
DEL, and the Unicode bidi overrides and isolates that make text read in another order than it
is written (plus the line and paragraph separators, which break lines).
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

#: C0 (but the newline, when kept), DEL, C1, bidi marks/embeddings/overrides/isolates, U+2028/9.
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_CONTROLS_AND_NEWLINE = re.compile("[\n" + _CONTROLS.pattern[1:])


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` (any object, as ``str``) with every control character escaped visibly.

    ``keep_newlines``: for a block of several lines built by backlane (a table, indented JSON);
    a single field (a reason, an id) escapes its newlines too, so it cannot forge a line."""
    pattern = _CONTROLS if keep_newlines else _CONTROLS_AND_NEWLINE
    return pattern.sub(_shown, str(text))


def say(text: object = "", *, file: TextIO | None = None, end: str = "\n", flush: bool = False) -> None:
    """``print`` for the command: the lines of ``text`` with their control characters escaped."""
    print(escape_controls(text, keep_newlines=True), file=file or sys.stdout, end=end, flush=flush)


def json_value(value: object) -> object:
    """``json.dumps``' fallback for what is not JSON already: a typed row's own JSON form
    (a pipeline's health rows), else its text (dates)."""
    as_json = getattr(value, "as_json", None)
    return as_json() if callable(as_json) else str(value)


def json_text(value: object, **options: object) -> str:
    """``json.dumps`` for the terminal: still valid JSON, with every control character escaped
    inside its strings (``ensure_ascii`` escapes C0, C1 and bidi; DEL is escaped here)."""
    import json

    options.setdefault("default", json_value)
    return json.dumps(value, ensure_ascii=True, **options).replace("\x7f", "\\u007f")  # type: ignore[arg-type]
