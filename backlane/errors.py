"""backlane's whole error vocabulary, and the one place exceptions are classified.

Every error backlane raises is a :class:`BacklaneError`: a ``reason`` meant for a
person and a ``kind`` for logs, metrics and dead letters. Every exception raised
while processing an item ends up as one of these:

* :class:`TransientError` — try again later with exponential backoff
  (network trouble, 5xx, timeouts, a message RabbitMQ could not route);
* :class:`DelayedRetry` — try again after exactly the delay someone named
  (:class:`RateLimited` by a server's "wait for X seconds" / Retry-After,
  :class:`CircuitOpen` until the breaker's trial time);
* :class:`Unavailable` — one of backlane's own dependencies (database, broker)
  is down: the item waits the outage out with capped backoff and its retry
  budget is not touched, since nothing is wrong with the item itself;
* :class:`PermanentError` — retrying cannot help (malformed message, 4xx,
  unknown item): the item is marked failed and the message dead-lettered
  (:class:`FinalFailure` is how processing ends it).

Delays named from outside are bounded (:func:`bounded_delay`): a Retry-After (seconds or an
HTTP-date) or a "wait for X seconds" body is clamped between 1 s (so ``Retry-After: 0`` is no
busy loop) and ``retries.max_delay_seconds`` (an hour); one we cannot read (``inf``, ``nan``,
negative, exponents, garbage) names no delay, so a 429 waits its 60 s default and a 503 is an
ordinary transient failure. Every :class:`DelayedRetry` is capped at the same ceiling, and
:mod:`backlane.core.processing` fails an item after ``retries.max_waits`` waits in a row.

:func:`classify` maps library exceptions (httpx, SQLAlchemy, pydantic, pika) onto
them, so actors never decide this on their own.

:class:`SetupError` and its kinds are backlane itself not set up to run (a bad
setting, a pipeline declaration that cannot work, a queue of the wrong type):
never an item's fault, they stop a command or a process with one line naming
what to fix. Raised inside an item, like any unexpected exception, they are transient.

:class:`Problem` is that one line with its exit status: what every command, the dashboard
and a worker or clock refusing to start say when they cannot go on (RabbitMQ refusing our
login is one, :func:`backlane.problems.broker_refused`).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import dramatiq.errors
import httpx
import pika.exceptions
import pydantic
import sqlalchemy.exc


class BacklaneError(Exception):
    """Base of all classified errors; ``reason`` is meant for a person."""

    kind = "error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(BacklaneError):
    """Worth retrying with backoff."""

    kind = "transient"


class DelayedRetry(TransientError):
    """Worth retrying, but not before ``delay_seconds``."""

    kind = "delayed"

    def __init__(self, reason: str, delay_seconds: float) -> None:
        super().__init__(reason)
        #: Never negative, NaN or infinite, never above :func:`delay_ceiling_seconds`: every
        #: consumer (Dramatiq's delay, a rate-limit hold, a catalog section's hold) can trust it.
        self.delay_seconds = bounded_delay(delay_seconds, 0.0)


class RateLimited(DelayedRetry):
    """The server told us to wait."""

    kind = "rate_limited"


class CircuitOpen(DelayedRetry):
    """A circuit breaker is open; calls resume at its trial time."""

    kind = "circuit_open"


class NotReady(DelayedRetry):
    """The item is not in a state to work on yet (e.g. an order still settling)."""

    kind = "not_ready"


class Paused(BacklaneError):
    """What the item belongs to is paused by an operator (``backlane pause``): the item waits,
    untouched and spending none of its retries, until it is resumed (see
    :func:`backlane.core.processing.wait_while_paused`). Raised by ``ctx.hold_while_paused``."""

    kind = "paused"

    def __init__(self, what: str, max_delay_s: float) -> None:
        super().__init__(f"{what} is paused")
        self.what = what
        self.max_delay_s = max_delay_s


class Unavailable(TransientError):
    """Our own database or broker is unreachable: wait, without spending the item's retries.

    An outage of any length must neither fail items nor dead-letter them; only the
    item's own failures (its API answering 5xx, timing out, refusing it) count."""

    kind = "unavailable"


class PermanentError(BacklaneError):
    """Retrying cannot help; fail the item and dead-letter the message."""

    kind = "permanent"


class MalformedMessage(PermanentError):
    """The message itself is invalid (bad JSON, wrong fields, unknown version)."""

    kind = "malformed"


class UnknownItem(PermanentError):
    """The message names an item that does not exist."""

    kind = "unknown_item"


class FailedEarlier(PermanentError):
    """A message came back (redelivered by RabbitMQ) for an item whose row had already failed
    for good: the first dead letter may never have been written, so it is written again."""

    kind = "failed_earlier"


class FinalFailure(BacklaneError):
    """Raised by :mod:`backlane.core.processing` to end a message for good (its row already
    marked failed); actors list it in ``throws`` and it is dead-lettered with its reason."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


class UnroutableMessages(TransientError):
    """RabbitMQ could not route (or refused) some messages; nothing was silently dropped."""

    kind = "unroutable"

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        sample = ", ".join(f"{mid}: {why}" for mid, why in list(failures.items())[:3])
        super().__init__(f"{len(failures)} message(s) not accepted by RabbitMQ ({sample})")


class SetupError(BacklaneError):
    """backlane is not set up to do what was asked (no application loaded, no runtime installed)."""

    kind = "setup"


class SettingsError(SetupError):
    """A setting is invalid; the message is one line naming the environment variable(s)."""

    kind = "settings"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        #: One entry per bad variable: "BACKLANE_X: what is wrong".
        self.problems = problems or [message]


class RegistrationError(SetupError):
    """A pipeline declaration that cannot work (duplicate name, bad queue name, nothing to claim)."""

    kind = "registration"


class CredentialsRejected(SetupError, Unavailable):
    """An identity server refused this client (``invalid_client``, ``invalid_scope``, 400/401 from
    its token endpoint), or an API refused a token it had just issued: a setting to fix, never
    the item's fault. The message is one line naming the settings; inside an item it waits like
    an outage (capped backoff, the item's retries untouched), so nothing is lost while it is fixed."""

    kind = "credentials"


#: Where the classic → quorum (and back) migration is described.
QUEUE_MIGRATION_DOC = "docs/scaling.md#changing-the-queue-type-of-a-running-deployment"


class QueueMismatch(SetupError):
    """A queue exists on RabbitMQ with other arguments than backlane declares (RabbitMQ answers
    PRECONDITION_FAILED): waiting cannot help, so it is one line naming the queue and the fix."""

    kind = "queue_mismatch"

    def __init__(self, queue: str, detail: str) -> None:
        self.queue = queue
        super().__init__(
            f"queue {queue!r} exists on RabbitMQ with other arguments than backlane declares ({detail}): "
            f"delete it once drained, or migrate it as {QUEUE_MIGRATION_DOC} says"
        )


class QueueTypeMismatch(QueueMismatch):
    """A queue exists on RabbitMQ with another type than ``broker.queue_type`` asks for.

    RabbitMQ cannot change a queue's type in place (it answers PRECONDITION_FAILED);
    the queue has to be drained and declared again, as the migration doc says."""

    kind = "queue_type"

    def __init__(self, queue: str, current: str, requested: str) -> None:
        self.queue, self.current, self.requested = queue, current, requested
        SetupError.__init__(
            self,
            f"queue {queue!r} exists on RabbitMQ as a {current} queue but BACKLANE_BROKER__QUEUE_TYPE is "
            f"{requested}: a queue's type cannot change in place; migrate it as {QUEUE_MIGRATION_DOC} says "
            f"(or set BACKLANE_BROKER__QUEUE_TYPE={current})",
        )


def redact_url(url: str) -> str:
    """``url`` (or ``;``-separated URLs: RabbitMQ, the database, any HTTP API) with each
    password replaced by ``***``: an error names the URL to fix, never its password. The one
    redaction in backlane (tests/unit/test_problems.py holds it)."""
    shown = []
    for part in url.split(";"):
        try:
            split = urlsplit(part)
            if split.password is None:
                shown.append(part)
                continue
            host = split.netloc.rsplit("@", 1)[1]
            shown.append(urlunsplit(split._replace(netloc=f"{split.username or ''}:***@{host}")))
        except ValueError:
            shown.append("<unparsable URL>")
    return ";".join(shown)


_WAIT_FOR = re.compile(r"wait\s+for\s+(\d{1,15}(?:\.\d{1,9})?)\s*s", re.IGNORECASE)
_SECONDS = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,9})?)\s*$")

#: A server-named wait is never shorter than this, seconds: ``Retry-After: 0`` repeated must not
#: turn a wait (never counted as a try) into a busy loop.
SERVER_DELAY_FLOOR_SECONDS = 1.0
#: The ceiling when the settings cannot be read (see ``retries.max_delay_seconds``).
DEFAULT_DELAY_CEILING_SECONDS = 3600.0


_delay_ceiling = DEFAULT_DELAY_CEILING_SECONDS


def set_delay_ceiling(seconds: float) -> None:
    """Installing a runtime sets its ``retries.max_delay_seconds`` here (this module reads no
    settings: they import it)."""
    global _delay_ceiling
    _delay_ceiling = float(seconds)


def delay_ceiling_seconds() -> float:
    """The longest any named delay may be (``BACKLANE_RETRIES__MAX_DELAY_SECONDS``, an hour by
    default): a server saying ``Retry-After: 30000000000`` must not hold an item for 950 years."""
    return _delay_ceiling


def bounded_delay(seconds: float, floor: float = SERVER_DELAY_FLOOR_SECONDS) -> float:
    """``seconds`` between ``floor`` and the ceiling; NaN or negative counts as ``floor``."""
    if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < floor:
        return floor
    return min(float(seconds), max(floor, delay_ceiling_seconds()))


def parse_delay_seconds(text: str, now: datetime | None = None) -> float | None:
    """A Retry-After value as seconds: a decimal number of seconds or an HTTP-date (a date in
    the past is 0). None for anything else (``inf``, ``nan``, ``-5``, ``1e9``, garbage): a
    value we cannot read names no delay, and the caller's own backoff applies."""
    match = _SECONDS.match(text)
    if match:
        return float(match.group(1))
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; one without a zone is not one
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The delay a server asked for (Retry-After header or a "wait for X seconds" body), bounded
    by :func:`bounded_delay`; None when it named none we can read."""
    header = response.headers.get("Retry-After")
    named = parse_delay_seconds(header[:100]) if header else None
    if named is None:
        match = _WAIT_FOR.search(response.text[:2000])
        named = float(match.group(1)) if match else None
    return bounded_delay(named) if named is not None else None


def _describe_response(response: httpx.Response) -> str:
    body = response.text[:300].strip()
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict):
            body = str(parsed.get("message") or parsed.get("error") or body)
    except ValueError:
        pass
    return f"{response.request.method} {response.request.url.path} answered {response.status_code}: {body}"


def classify_response(response: httpx.Response) -> BacklaneError | None:
    """The error an HTTP response stands for, or None when it is a success."""
    status = response.status_code
    if status < 400:
        return None
    reason = _describe_response(response)
    delay = retry_after_seconds(response)
    if status == 429 or (delay is not None and status == 503):
        return RateLimited(reason, delay if delay is not None else 60.0)
    if status >= 500 or status in (408, 425):
        return TransientError(reason)
    return PermanentError(reason)


def classify(exc: BaseException) -> BacklaneError:
    """Map any exception onto backlane's vocabulary. Unknown exceptions are transient:
    a bug then shows up as retries and finally a failed item, never as lost work."""
    if isinstance(exc, BacklaneError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        return classify_response(exc.response) or TransientError(str(exc))
    if isinstance(exc, httpx.TransportError):  # connect, read, timeouts, protocol errors
        return TransientError(f"{exc.__class__.__name__}: {exc or 'network error'}")
    if isinstance(exc, pydantic.ValidationError):
        return MalformedMessage(_describe_validation(exc))
    if isinstance(exc, json.JSONDecodeError):
        return MalformedMessage(f"not valid JSON: {exc}")
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return Unavailable(f"database unavailable: {first_line(exc.orig or exc)}")
    if isinstance(exc, dramatiq.errors.BrokerConnectionError | pika.exceptions.AMQPConnectionError):
        return Unavailable(f"broker unavailable: {first_line(exc) or exc.__class__.__name__}")
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return PermanentError(f"database integrity error: {exc.orig or exc}")
    if isinstance(exc, TimeoutError):
        return TransientError(f"timed out: {exc}")
    return TransientError(f"{exc.__class__.__name__}: {exc}")


def first_line(exc: object, limit: int | None = None) -> str:
    """The first line of ``exc``'s text (at most ``limit`` characters), or "" when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""


def named_cause(exc: BaseException, limit: int = 200) -> str:
    """``exc`` in a few words for a one-line message: ``"ConnectionRefusedError: [Errno 111] ..."``,
    or its class's name alone when its text says nothing more."""
    name = type(exc).__name__
    text = first_line(exc, limit)
    return f"{name}: {text}" if text and text != name else name


def _describe_validation(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return f"invalid {exc.title}: " + "; ".join(parts)


def delay_ms(error: DelayedRetry) -> int:
    """Dramatiq wants whole milliseconds; never round a server's delay down. Total: the delay is
    bounded (finite, at most the ceiling) even when ``delay_seconds`` was set after construction."""
    return math.ceil(bounded_delay(error.delay_seconds, 0.0) * 1000)


#: Exit statuses of a :class:`Problem` (see :mod:`backlane.problems`): a dependency unreachable or
#: not ready (RabbitMQ or the database down, the database not migrated yet).
EXIT_UNAVAILABLE = 1
#: A mistake in the command line or the settings (a bad value, an unknown pipeline or queue, a
#: password RabbitMQ refuses).
EXIT_USAGE = 2
#: A worker or the clock refusing to start (sysexits' EX_CONFIG), so a supervisor
#: (``RestartPreventExitStatus=78``) does not restart it in a loop.
EXIT_CONFIG = 78
#: Ctrl-C.
EXIT_INTERRUPTED = 130


class Problem(BacklaneError):
    """What went wrong, for a person: ``line`` (one line naming the cause and the fix) and the exit
    ``status`` that goes with it. The one such type: every command prints it and exits with its
    status, the dashboard shows its line, a worker or the clock refusing to start logs it (and
    exits with :data:`EXIT_CONFIG`). Raised by commands and start-up checks, never while working
    on an item; :func:`backlane.problems.explain` makes one of any library's exception."""

    kind = "problem"

    def __init__(self, line: str, status: int = EXIT_UNAVAILABLE) -> None:
        super().__init__(line)
        self.line = line
        self.status = status
