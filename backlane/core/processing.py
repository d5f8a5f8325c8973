"""Running one item: the single place where errors become retries, waits or failures.

There is one retry count per item, backlane's own, kept in the message's
``backlane_failures`` option; Dramatiq's Retries middleware only carries out
what is decided here (every path out of :func:`run_item` is either success,
``dramatiq.Retry`` with its delay, or :class:`FinalFailure`), so it can never
give up on an item before the item's budget is spent.

* Only the item's own failures count against its budget; "the server said
  wait" and "not ready yet" are waits, and an outage of our own database or
  broker (:class:`~backlane.errors.Unavailable`) is waited out with capped
  backoff however long it lasts.
* An item fails for good only once its row says so: the pipeline's
  ``on_failure`` writes the reason first. If that write is impossible (the
  database is down) the message is retried and remembers the pending failure,
  so it is never dead-lettered with its row left in flight.
* A message older than ``max_age_ms`` is let go without work (its row stays
  due and discover offers it again); it is never dead-lettered for its age.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import dramatiq
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from backlane.core import outcomes
from backlane.core.options import (  # re-exported: the options' names live there
    FAILURES_OPTION,
    PAUSED_OPTION,
    PENDING_FAILURE_OPTION,
    REQUEUED_OPTION,  # noqa: F401 - imported from here by registry and the dead-letter tools
    SIGNATURE_OPTION,
    WAITS_OPTION,
)
from backlane.errors import (
    BacklaneError,
    DelayedRetry,
    FinalFailure,
    Paused,
    PermanentError,
    TransientError,
    Unavailable,
    classify,
    delay_ms,
)
from backlane.operations import metrics

#: Message option counting consecutive named waits (rate limited, breaker open, not ready): a
#: wait is never a try, yet an item fails for good after ``RetryPolicy.max_waits`` in a row.
#: Honoured only on a signed message, like every option (backlane.messaging.signing).
DELAYS_OPTION = "backlane_delays"

#: Options that belong to one life of a message in its queue, dropped when an operator requeues it.
ATTEMPT_OPTIONS = (
    "dead_letter",
    "retries",
    FAILURES_OPTION,
    WAITS_OPTION,
    DELAYS_OPTION,
    PENDING_FAILURE_OPTION,
    PAUSED_OPTION,
    "traceback",
    "requeue_timestamp",
    "eta",
    SIGNATURE_OPTION,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    #: A message older than this is let go unworked (its row stays due); None: no limit.
    max_age_ms: int | None = None
    #: Named waits in a row (see DELAYS_OPTION) before the item fails for good.
    max_waits: int = 10_000

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

    pending = options.get(PENDING_FAILURE_OPTION)
    if isinstance(pending, dict):
        # The budget was spent on an earlier delivery; only the row's failure is left to write.
        _fail(
            name,
            item,
            policy,
            on_failure,
            options,
            attempt,
            started,
            str(pending.get("kind", "error")),
            str(pending.get("reason", "")),
            None,
        )
        return

    if message is not None and policy.max_age_ms is not None:
        age_ms = time.time() * 1000 - message.message_timestamp
        if age_ms > policy.max_age_ms:
            outcomes.record(
                name,
                item,
                "expired",
                attempt=attempt,
                duration_s=0.0,
                reason=f"message is {age_ms / 1000:.0f}s old (max age {policy.max_age_ms / 1000:.0f}s); "
                "its row stays due for discover",
            )
            return

    try:
        work()
    except Paused as paused:  # the work found its part paused: a wait, not an attempt
        wait_while_paused(name, paused.what, paused.max_delay_s)
    except (Exception, TimeLimitExceeded) as exc:
        err = TransientError("time limit exceeded") if isinstance(exc, TimeLimitExceeded) else classify(exc)
        elapsed = time.monotonic() - started
        if isinstance(err, Unavailable):
            _wait(name, item, policy, options, attempt, elapsed, err, exc)
        if isinstance(err, DelayedRetry):
            options.pop(WAITS_OPTION, None)
            delays = _count(options.get(DELAYS_OPTION))
            if delays >= policy.max_waits:
                reason = f"gave up after {delays} waits in a row (retries.max_waits): {err.reason}"
                _fail(name, item, policy, on_failure, options, attempt, started, err.kind, reason, exc)
            options[DELAYS_OPTION] = delays + 1
            _retry(name, item, "waiting", attempt, elapsed, err, max(1, delay_ms(err)), exc, err.delay_seconds)
        if isinstance(err, PermanentError) or failures >= policy.max_retries:
            reason = (
                err.reason if isinstance(err, PermanentError) else f"gave up after {attempt} attempts: {err.reason}"
            )
            _fail(name, item, policy, on_failure, options, attempt, started, err.kind, reason, exc)
        options.pop(WAITS_OPTION, None)
        options.pop(DELAYS_OPTION, None)
        options[FAILURES_OPTION] = failures + 1
        _retry(name, item, "retry", attempt, elapsed, err, policy.backoff_ms(failures), exc)
    options.pop(WAITS_OPTION, None)
    options.pop(PAUSED_OPTION, None)
    outcomes.record(name, item, "succeeded", attempt=attempt, duration_s=time.monotonic() - started)


def wait_while_paused(name: str, what: str, max_delay_s: float) -> NoReturn:
    """Put the current message back for later, its item untouched: ``what`` is paused. Not an
    attempt (no outcome, no budget spent, no wait counted against ``max_waits``); the wait grows
    1 s, 2 s, 4 s ... up to ``max_delay_s``, so a long pause costs a message a look every
    ``max_delay_s`` and a resume is seen within about that long."""
    message = CurrentMessage.get_current_message()
    options: dict[str, Any] = message.options if message is not None else {}
    looks = _count(options.get(PAUSED_OPTION))
    options[PAUSED_OPTION] = looks + 1
    delay_s = min(2.0 ** min(looks, 20), max_delay_s)
    metrics.observe_outcome(name, "paused", None, 0.0)  # counted, never logged per item
    raise dramatiq.Retry(f"{what} is paused", delay=int(delay_s * 1000))


def _count(value: Any) -> int:
    """A counter option as a non-negative int (0 for anything else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _wait(
    name: str,
    item: Any,
    policy: RetryPolicy,
    options: dict[str, Any],
    attempt: int,
    elapsed: float,
    err: Unavailable,
    cause: BaseException | None,
) -> NoReturn:
    """Wait an outage out: capped backoff that grows per wait, the item's budget untouched."""
    waits = int(options.get(WAITS_OPTION, 0))
    options[WAITS_OPTION] = waits + 1
    _retry(name, item, "waiting", attempt, elapsed, err, policy.backoff_ms(min(waits, 30)), cause)


def _retry(
    name: str,
    item: Any,
    outcome: str,
    attempt: int,
    elapsed: float,
    err: BacklaneError,
    delay_ms: int,
    cause: BaseException | None,
    delay_s: float | None = None,
) -> NoReturn:
    """Record the attempt's outcome, then have Dramatiq deliver the message again after ``delay_ms``
    (``delay_s``: the delay as the server or breaker named it, when it did)."""
    outcomes.record(
        name,
        item,
        outcome,
        attempt=attempt,
        duration_s=elapsed,
        kind=err.kind,
        reason=err.reason,
        delay_s=delay_s if delay_s is not None else delay_ms / 1000,
    )
    raise dramatiq.Retry(err.reason, delay=delay_ms) from cause


def _fail(
    name: str,
    item: Any,
    policy: RetryPolicy,
    on_failure: Callable[[str], None] | None,
    options: dict[str, Any],
    attempt: int,
    started: float,
    kind: str,
    reason: str,
    cause: BaseException | None,
) -> None:
    """End the item for good: its row first, then the dead letter. Always raises."""
    if on_failure is not None:
        try:
            on_failure(reason)
        except Exception as exc:
            # Never dead-letter an item whose row still says it is in flight: keep the
            # verdict on the message and try the write again after a (capped) wait.
            options[PENDING_FAILURE_OPTION] = {"kind": kind, "reason": reason}
            problem = classify(exc)
            _wait(
                name,
                item,
                policy,
                options,
                attempt,
                time.monotonic() - started,
                Unavailable(f"could not record the failure ({reason}): {problem.reason}"),
                exc,
            )
    options.pop(PENDING_FAILURE_OPTION, None)
    outcomes.record(
        name, item, "failed", attempt=attempt, duration_s=time.monotonic() - started, kind=kind, reason=reason
    )
    raise FinalFailure(reason, kind) from cause
