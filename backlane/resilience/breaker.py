"""A circuit breaker whose state every worker process shares (one row in the database).

After ``failure_threshold`` failures in a row the breaker opens: calls are
refused with :class:`~backlane.errors.CircuitOpen` naming the delay until the
trial, so the message is retried exactly then. When that time comes, exactly one
caller is let through (half-open, taken under a row lock); its outcome closes
the breaker or opens it for another ``open_seconds``. While a breaker has seen a
failure but is not open yet, callers also go one at a time, so a source that is
down gets at most ``failure_threshold`` calls, not one per concurrent worker.

The transitions are pure functions of a :class:`BreakerSnapshot` (unit-tested
without a database); :class:`CircuitBreaker` loads, applies and stores them.
Only transient errors count as failures: a 4xx means the service answered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import select

from backlane.core.clock import as_utc
from backlane.db.models.resilience import CircuitBreakerRow
from backlane.db.rows import locked_row, peek_row
from backlane.errors import CircuitOpen, DelayedRetry, PermanentError, classify

if TYPE_CHECKING:
    from backlane.core.clock import Clock
    from backlane.db.engine import Database

logger = logging.getLogger("backlane.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: A trial (or probe) call holds the breaker at most this long, seconds; a caller
#: that crashed mid-call frees it then. Keep it above the guarded call's timeout.
DEFAULT_TRIAL_SECONDS = 60.0


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str = CLOSED
    consecutive_failures: int = 0
    open_until: datetime | None = None
    trial_until: datetime | None = None
    times_opened: int = 0


@dataclass(frozen=True)
class Admission:
    allowed: bool
    #: Seconds until a refused caller should come back.
    delay: float
    after: BreakerSnapshot


def admit(s: BreakerSnapshot, now: datetime, *, open_seconds: float, trial_seconds: float) -> Admission:
    """May a call go ahead now? Takes the single trial/probe slot when it does. An open period
    ending later than ``open_seconds`` from now (stored under an older, longer setting) is cut
    back to it: the breaker's open time is ours to bound."""
    if s.state == OPEN and s.open_until is not None and s.open_until > now + timedelta(seconds=open_seconds):
        s = replace(s, open_until=now + timedelta(seconds=open_seconds))
    if s.state == OPEN and s.open_until is not None and now < s.open_until:
        return Admission(False, (s.open_until - now).total_seconds(), s)
    needs_slot = s.state != CLOSED or s.consecutive_failures > 0
    if not needs_slot:
        return Admission(True, 0.0, s)
    if s.trial_until is not None and now < s.trial_until:  # someone else is the trial
        return Admission(False, min((s.trial_until - now).total_seconds(), open_seconds), s)
    state = HALF_OPEN if s.state in (OPEN, HALF_OPEN) else CLOSED
    return Admission(True, 0.0, replace(s, state=state, trial_until=now + timedelta(seconds=trial_seconds)))


def after_success(s: BreakerSnapshot) -> BreakerSnapshot:
    return replace(s, state=CLOSED, consecutive_failures=0, open_until=None, trial_until=None)


def after_failure(s: BreakerSnapshot, now: datetime, *, threshold: int, open_seconds: float) -> BreakerSnapshot:
    failures = s.consecutive_failures + 1
    if s.state == OPEN:  # a call from before it opened failing late: no new open period
        return replace(s, consecutive_failures=failures)
    if s.state == HALF_OPEN or failures >= threshold:
        until = now + timedelta(seconds=open_seconds)
        return BreakerSnapshot(OPEN, failures, until, None, s.times_opened + 1)
    return replace(s, consecutive_failures=failures, trial_until=None)


def after_neutral(s: BreakerSnapshot) -> BreakerSnapshot:
    """The call ended saying nothing about the service (we rate-limited ourselves): free the slot."""
    return replace(s, trial_until=None)


def effective_state(s: BreakerSnapshot, now: datetime) -> str:
    """What an operator should see: an open breaker whose time is up is waiting for its trial."""
    if s.state == OPEN and s.open_until is not None and now >= s.open_until:
        return HALF_OPEN
    return s.state


class CircuitBreaker:
    """One named breaker; cheap to build (state lives in the database), so build one per use."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        name: str,
        failure_threshold: int,
        open_seconds: float,
        trial_seconds: float = DEFAULT_TRIAL_SECONDS,
    ) -> None:
        self.db = db
        self.clock = clock
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.trial_seconds = trial_seconds

    def before_call(self) -> None:
        """Return when a call may go ahead; raise CircuitOpen(delay until the trial) otherwise."""
        with self.db.transaction() as session:
            row = peek_row(session, CircuitBreakerRow, {"name": self.name})
        if row is None or (row.state == CLOSED and row.consecutive_failures == 0):
            return
        with self.db.transaction() as session:
            row = self._locked(session)
            now = self.clock.now()
            admission = admit(_snapshot(row), now, open_seconds=self.open_seconds, trial_seconds=self.trial_seconds)
            if admission.allowed:
                _store(row, admission.after, now)
                return
        raise CircuitOpen(
            f"circuit {self.name!r} is {row.state}"
            + (f" after {row.consecutive_failures} failures" if row.consecutive_failures else "")
            + (f" ({row.last_failure_reason})" if row.last_failure_reason else ""),
            admission.delay,
        )

    def record_success(self) -> None:
        with self.db.transaction() as session:
            row = peek_row(session, CircuitBreakerRow, {"name": self.name})
        if row is None or (row.state == CLOSED and row.consecutive_failures == 0 and row.trial_until is None):
            return
        with self.db.transaction() as session:
            row = self._locked(session)
            was = row.state
            now = self.clock.now()
            _store(row, after_success(_snapshot(row)), now)
            row.last_success_at = now
        if was != CLOSED:
            logger.warning("circuit %s closed: the trial call succeeded", self.name)

    def record_failure(self, reason: str) -> None:
        with self.db.transaction() as session:
            row = self._locked(session)
            now = self.clock.now()
            before = _snapshot(row)
            after = after_failure(before, now, threshold=self.failure_threshold, open_seconds=self.open_seconds)
            _store(row, after, now)
            row.last_failure_at = now
            row.last_failure_reason = reason[:2000]
        if after.times_opened > before.times_opened:
            logger.warning(
                "circuit %s opened for %.0fs after %d failures in a row: %s",
                self.name,
                self.open_seconds,
                after.consecutive_failures,
                reason,
            )

    def release(self) -> None:
        """Neither success nor failure (e.g. rate-limited before calling): free a trial slot."""
        with self.db.transaction() as session:
            row = peek_row(session, CircuitBreakerRow, {"name": self.name})
        if row is None or row.trial_until is None:
            return
        with self.db.transaction() as session:
            row = self._locked(session)
            _store(row, after_neutral(_snapshot(row)), self.clock.now())

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``before_call``, then record the outcome of the block by its classified error."""
        self.before_call()
        try:
            yield
        except TimeLimitExceeded:
            self.record_failure("time limit exceeded")
            raise
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, DelayedRetry):
                self.release()
            elif isinstance(error, PermanentError):
                self.record_success()  # the service answered; the request was at fault
            else:
                self.record_failure(error.reason)
            raise
        except BaseException:
            self.release()
            raise
        self.record_success()

    def state(self) -> dict[str, Any]:
        with self.db.transaction() as session:
            row = peek_row(session, CircuitBreakerRow, {"name": self.name})
            now = self.clock.now()
            if row is None:
                return {"name": self.name, "state": CLOSED, "consecutive_failures": 0, "times_opened": 0}
            return breaker_row_state(row, now)

    def _locked(self, session: Any) -> CircuitBreakerRow:
        return locked_row(session, CircuitBreakerRow, {"name": self.name}, {"updated_at": self.clock.now()})


def all_breaker_states(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Every breaker any worker has used, for ``backlane status``."""
    with db.transaction() as session:
        rows = session.scalars(select(CircuitBreakerRow).order_by(CircuitBreakerRow.name))
        return [breaker_row_state(row, now) for row in rows]


def breaker_row_state(row: CircuitBreakerRow, now: datetime) -> dict[str, Any]:
    """A breaker row as status shows it."""
    snap = _snapshot(row)
    state = effective_state(snap, now)
    return {
        "name": row.name,
        "state": state,
        "consecutive_failures": row.consecutive_failures,
        "times_opened": row.times_opened,
        "open_until": snap.open_until,
        "retry_in_s": (snap.open_until - now).total_seconds() if state == OPEN and snap.open_until else 0.0,
        "last_failure_at": row.last_failure_at and as_utc(row.last_failure_at),
        "last_failure_reason": row.last_failure_reason,
        "last_success_at": row.last_success_at and as_utc(row.last_success_at),
    }


def _snapshot(row: CircuitBreakerRow) -> BreakerSnapshot:
    return BreakerSnapshot(
        state=row.state,
        consecutive_failures=row.consecutive_failures,
        open_until=as_utc(row.open_until) if row.open_until else None,
        trial_until=as_utc(row.trial_until) if row.trial_until else None,
        times_opened=row.times_opened,
    )


def _store(row: CircuitBreakerRow, s: BreakerSnapshot, now: datetime) -> None:
    row.state = s.state
    row.consecutive_failures = s.consecutive_failures
    row.open_until = s.open_until
    row.trial_until = s.trial_until
    row.times_opened = s.times_opened
    row.updated_at = now
