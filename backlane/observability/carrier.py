"""Where a message carries its trace context, and reading it from what another service sent.

backlane's messages carry the W3C trace context (https://www.w3.org/TR/trace-context/) as the
message options ``traceparent`` and ``tracestate`` (signed with the other options when backlane
publishes; kept on an unsigned message, since nothing but the span's parent depends on them:
:data:`backlane.messaging.signing.WIRE_OPTIONS`). A MassTransit publisher puts its activity's
W3C id in the ``MT-Activity-Id`` header (and the same headers in its envelope's ``headers``);
the MassTransit adapter copies it into ``traceparent`` (:func:`from_headers`), so its trace
continues in the consumer. Everything here is untrusted input: a value that is not a well-formed
``traceparent`` is ignored, a ``tracestate`` is bounded.

No OpenTelemetry import here: this runs with tracing off too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Message option (and AMQP header) holding the W3C ``traceparent``.
TRACEPARENT = "traceparent"
#: Message option (and AMQP header) holding the W3C ``tracestate``.
TRACESTATE = "tracestate"
#: MassTransit's header carrying its activity's id (a W3C traceparent string with .NET's default
#: ActivityIdFormat.W3C).
MT_ACTIVITY_ID = "MT-Activity-Id"
#: Option a retried message carries: the ``traceparent`` of its first attempt's span, which every
#: later attempt's span links to. Written by backlane only (a signed message's option).
FIRST_ATTEMPT = "backlane_trace_first"
#: Longest ``tracestate`` taken, characters (W3C: at most 32 members, 512 characters are kept).
MAX_TRACESTATE_CHARS = 512

_TRACEPARENT = re.compile(r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")


def traceparent(value: Any) -> str | None:
    """``value`` when it is a well-formed W3C traceparent (bytes decoded), else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or len(value) != 55:
        return None
    return value if _TRACEPARENT.match(value) and not value.startswith("ff") else None


def tracestate(value: Any) -> str | None:
    """``value`` as a tracestate to pass on: text of at most :data:`MAX_TRACESTATE_CHARS`, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value or len(value) > MAX_TRACESTATE_CHARS or not value.isprintable():
        return None
    return value


def from_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The trace context a message's options carry, as a W3C carrier (empty when none)."""
    parent = traceparent(options.get(TRACEPARENT))
    if parent is None:
        return {}
    state = tracestate(options.get(TRACESTATE))
    return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}


def from_headers(*tables: Any) -> dict[str, str]:
    """The trace context of a delivery from another service, as message options (empty when
    none): ``traceparent`` (with its ``tracestate``), else MassTransit's ``MT-Activity-Id``,
    from the first of ``tables`` (AMQP headers, then the envelope's ``headers``) that has one."""
    for table in tables:
        if not isinstance(table, Mapping):
            continue
        parent = traceparent(table.get(TRACEPARENT))
        if parent is not None:
            state = tracestate(table.get(TRACESTATE))
            return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}
        parent = traceparent(table.get(MT_ACTIVITY_ID))
        if parent is not None:
            return {TRACEPARENT: parent}
    return {}
