"""What went wrong, in one line that names the fix, and the exit status that goes with it.

Every ``backlane`` command, the dashboard, the worker and the clock end a mistake or an
unavailable dependency the same way: one :class:`~backlane.errors.Problem`, a line naming
the cause and what to do (the setting to fix, ``backlane migrate``, the queues that exist),
never a traceback (``backlane --debug`` shows one). :func:`explain` turns the exceptions of
the libraries underneath (pydantic, SQLAlchemy, pika, httpx) into one; code that knows
better raises one itself. The lines that several places say (RabbitMQ refusing us or
unreachable, the database not migrated) are made here, once.

Exit statuses (defined with :class:`~backlane.errors.Problem`):

* :data:`EXIT_USAGE` (2): a mistake in the command line or the settings
  (a bad value, an unknown pipeline or queue, a password RabbitMQ refuses);
* :data:`EXIT_UNAVAILABLE` (1): a dependency is unreachable or not ready
  (RabbitMQ or the database down, the database not migrated yet);
* :data:`EXIT_INTERRUPTED` (130): Ctrl-C;
* :data:`EXIT_CONFIG` (78, sysexits' EX_CONFIG): a worker or the clock refusing to start
  on a bad setting, a refused login or a database without its schema, so a supervisor
  (``RestartPreventExitStatus=78``) does not restart it in a loop.
"""

from __future__ import annotations

from backlane.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Problem,
    first_line,
    named_cause,
    redact_url,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERRUPTED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Problem",
    "broker_problem",
    "broker_refused",
    "broker_unreachable",
    "explain",
    "redact_url",
]

#: The settings named by the lines below (each spelled here only).
DATABASE_URL = "BACKLANE_DATABASE__URL"
BROKER_URL = "BACKLANE_BROKER__URL"
MANAGEMENT_URL = "BACKLANE_BROKER__MANAGEMENT_URL"
MANAGEMENT_LOGIN = "BACKLANE_BROKER__MANAGEMENT_USER / BACKLANE_BROKER__MANAGEMENT_PASSWORD"


def _db_error_text(exc: BaseException) -> str:
    """What the database driver said (SQLAlchemy wraps it), first line; its class's name when nothing."""
    orig = getattr(exc, "orig", None)
    said = orig if isinstance(orig, BaseException) else exc
    return first_line(said, 300) or type(said).__name__


def database_problem(exc: BaseException, url: str) -> Problem | None:
    """The line for a database failure at ``url``; None when ``exc`` is not one."""
    import sqlalchemy.exc

    shown = redact_url(url)
    if isinstance(exc, sqlalchemy.exc.ArgumentError | sqlalchemy.exc.NoSuchModuleError):
        return Problem(
            f"{DATABASE_URL} is not a usable database URL ({_db_error_text(exc)}); expected "
            "sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname",
            EXIT_USAGE,
        )
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return None
    text = _db_error_text(exc)
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    lowered = text.lower()
    if code == "42P01" or "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return not_migrated(url, text)
    if code in ("28P01", "28000", "3D000") or "authentication failed" in lowered or "does not exist" in lowered:
        return Problem(f"the database at {shown} refused us ({text}): fix {DATABASE_URL}", EXIT_USAGE)
    if "unable to open database file" in lowered:
        return Problem(
            f"cannot open the SQLite file of {shown} ({text}): does its directory exist? fix {DATABASE_URL}",
            EXIT_USAGE,
        )
    return Problem(
        f"the database at {shown} is unreachable ({text}): is it running? ({DATABASE_URL})", EXIT_UNAVAILABLE
    )


def not_migrated(url: str, detail: str = "") -> Problem:
    why = f" ({detail})" if detail else ""
    return Problem(
        f"the database at {redact_url(url)} has no backlane schema{why}: run `backlane migrate`",
        EXIT_UNAVAILABLE,
    )


def missing_sqlite_file(url: str, path: str) -> Problem:
    return Problem(
        f"no database file at {path} ({DATABASE_URL} is {redact_url(url)}): run `backlane migrate` "
        f"to create it, or point {DATABASE_URL} at your database",
        EXIT_UNAVAILABLE,
    )


def broker_refused(url: str, refusal: str) -> Problem:
    """RabbitMQ refused our login, vhost or a permission (``refusal``: its own words, e.g.
    "ACCESS_REFUSED - Login was refused ..."): a configuration error, not an outage."""
    return Problem(
        f"RabbitMQ refused access ({refusal}): fix the user, password, vhost or permissions in "
        f"{BROKER_URL} (now {redact_url(url)})",
        EXIT_USAGE,
    )


def broker_unreachable(url: str, exc: BaseException) -> Problem:
    """No RabbitMQ answers at ``url``: wait for it or start it."""
    return Problem(
        f"RabbitMQ at {redact_url(url)} is unreachable ({broker_cause(exc)}): is it running? ({BROKER_URL})",
        EXIT_UNAVAILABLE,
    )


def broker_problem(exc: BaseException, url: str) -> Problem | None:
    """The line for RabbitMQ refusing us or staying away; None when ``exc`` is not about RabbitMQ."""
    import pika.exceptions
    from dramatiq.errors import BrokerConnectionError

    from backlane.messaging.broker_faults import refusal_of

    if isinstance(exc, Problem):
        return exc
    if not isinstance(exc, BrokerConnectionError | pika.exceptions.AMQPError):
        return None
    reason = refusal_of(exc)
    if reason is not None:
        return broker_refused(url, reason)
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return Problem(f"RabbitMQ refused an operation: {exc.reply_text} ({exc.reply_code})", EXIT_UNAVAILABLE)
    return broker_unreachable(url, exc)


def broker_cause(exc: BaseException) -> str:
    """The innermost cause of a pika/Dramatiq connection error (they nest it), briefly."""
    inner: BaseException = exc
    for _ in range(10):
        nested = [
            getattr(inner, "message", None),
            getattr(inner, "exception", None),
            *(getattr(inner, "exceptions", None) or ()),
            *getattr(inner, "args", ()),
        ]
        causes = [e for e in nested if isinstance(e, BaseException)]
        if not causes:
            break
        inner = causes[-1]
    return named_cause(inner)


def management_problem(exc: BaseException, url: str) -> Problem | None:
    """The line for the RabbitMQ management API failing; None when ``exc`` is not an HTTP error."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return Problem(
                f"the RabbitMQ management API at {url} refused the login ({status}): fix {MANAGEMENT_LOGIN}",
                EXIT_USAGE,
            )
        return Problem(f"the RabbitMQ management API at {url} answered {status} ({MANAGEMENT_URL})", EXIT_UNAVAILABLE)
    if isinstance(exc, httpx.TransportError):
        return Problem(
            f"the RabbitMQ management API at {url} is unreachable ({named_cause(exc, 300)}): "
            f"is the management plugin on? ({MANAGEMENT_URL})",
            EXIT_UNAVAILABLE,
        )
    return None


def explain(exc: BaseException) -> Problem | None:
    """``exc`` as one line and an exit status, or None for a failure nobody foresaw (a bug)."""
    from backlane.errors import SetupError
    from backlane.settings import SettingsError

    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, SettingsError | SetupError):
        return Problem(str(exc), EXIT_USAGE)
    try:
        from backlane.settings import get_settings

        settings = get_settings()
    except SettingsError as bad:
        return Problem(str(bad), EXIT_USAGE)
    for found in (
        broker_problem(exc, settings.broker.url.get_secret_value()),
        database_problem(exc, settings.database.url.get_secret_value()),
        management_problem(exc, settings.broker.management_url),
    ):
        if found is not None:
            return found
    return None
