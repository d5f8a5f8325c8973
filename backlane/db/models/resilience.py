"""State shared by every worker process: circuit breakers and rate limits.

A breaker or a rate limit held in one process's memory would let N processes
make N times the calls; here each is one row, read and written under a row lock
(``FOR UPDATE`` on PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite),
so "exactly one trial call" and "2 requests an hour" hold across all of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base


class CircuitBreakerRow(Base):
    """One breaker (e.g. one source); see :mod:`backlane.resilience.breaker`."""

    __tablename__ = "circuit_breakers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: closed, open or half_open.
    state: Mapped[str] = mapped_column(String(16), default="closed")
    #: Failures in a row since the last success.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: While open, calls are refused until then; then one trial call decides.
    open_until: Mapped[datetime | None]
    #: While half-open, the trial call holds the breaker until then (a crashed trial frees it).
    trial_until: Mapped[datetime | None]
    #: How many times it opened, ever (for status and tests).
    times_opened: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]
    last_failure_reason: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class RateLimitRow(Base):
    """One endpoint's recent calls and any wait the server asked for."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: Epoch seconds of the calls inside the current window (a sliding-window log).
    calls: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: No call before then: the server said "wait for X seconds" (or Retry-After).
    held_until: Mapped[datetime | None]
    hold_reason: Mapped[str | None] = mapped_column(Text)
    #: Calls refused by the limiter itself, ever (for status and tests).
    refused: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]
