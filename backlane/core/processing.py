"""Running one item: the single place where errors become retries, waits or failures.

Dramatiq's Retries middleware would count every raise against ``max_retries``,
including "the server said wait 30 minutes" and "the order is still pending".
Here only real failures count (kept in the message's ``backlane_failures``
option); named delays never use up an item's retries. When an item fails for
good its pipeline records the failure on the row first, then the message is
rejected and lands in the dead-letter queue with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from backlane.core import outcomes
from backlane.errors import BacklaneError, DelayedRetry, PermanentError, TransientError, classify, delay_ms

#: Message option holding how many real failures an item has had.
FAILURES_OPTION = "backlane_failures"
#: Message option set on a dead letter an operator requeued.
REQUEUED_OPTION = "backlane_requeued"


class FinalFailure(BacklaneError):
    """Raised to end a message for good; actors list it in ``throws``."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int

    def backoff_ms(self, failures: int) -> int:
        """Exponential backoff with jitter for the ``failures``-th failure (0-based)."""
        _, delay = compute_backoff(failures, factor=self.min_backoff_ms, max_backoff=self.max_backoff_ms)
        return int(delay)


def run_item(
    name: str,
    item: Any,
    work: Callable[[], None],
    policy: RetryPolicy,
    on_failure: Callable[[str], None] | None = None,
) -> None:
    """Run ``work`` for ``item`` and turn whatever happens into one outcome."""
    message = CurrentMessage.get_current_message()
    options: dict[str, Any] = message.options if message is not None else {}
    failures = int(options.get(FAILURES_OPTION, 0))
    attempt = failures + 1
    started = time.monotonic()
    try:
        work()
    except (Exception, TimeLimitExceeded) as exc:
        elapsed = time.monotonic() - started
        err = TransientError("time limit exceeded") if isinstance(exc, TimeLimitExceeded) else classify(exc)
        if isinstance(err, DelayedRetry):
            outcomes.record(
                name,
                item,
                "waiting",
                attempt=attempt,
                duration_s=elapsed,
                kind=err.kind,
                reason=err.reason,
                delay_s=err.delay_seconds,
            )
            raise dramatiq.Retry(err.reason, delay=max(1, delay_ms(err))) from exc
        if isinstance(err, PermanentError) or failures >= policy.max_retries:
            reason = (
                err.reason if isinstance(err, PermanentError) else (f"gave up after {attempt} attempts: {err.reason}")
            )
            if on_failure is not None:
                on_failure(reason)  # if this raises (database down) the message is retried instead
            outcomes.record(name, item, "failed", attempt=attempt, duration_s=elapsed, kind=err.kind, reason=reason)
            raise FinalFailure(reason, err.kind) from exc
        options[FAILURES_OPTION] = failures + 1
        backoff = policy.backoff_ms(failures)
        outcomes.record(
            name,
            item,
            "retry",
            attempt=attempt,
            duration_s=elapsed,
            kind=err.kind,
            reason=err.reason,
            delay_s=backoff / 1000,
        )
        raise dramatiq.Retry(err.reason, delay=backoff) from exc
    outcomes.record(name, item, "succeeded", attempt=attempt, duration_s=time.monotonic() - started)
