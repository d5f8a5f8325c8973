"""One log line per item outcome, and the counters behind the metrics.

Every per-item attempt ends here exactly once, with the pipeline, the item,
the attempt number, the duration and, for failures, the error class and reason,
so an operator can grep one item's whole history. An attempt that is not a
first-try success is also kept per item for the dashboard (:mod:`backlane.core.attempts`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from backlane.core import attempts, log_limits
from backlane.operations import metrics

logger = logging.getLogger("backlane.outcome")


def record(
    pipeline: str,
    item: Any,
    outcome: str,
    *,
    attempt: int,
    duration_s: float,
    kind: str | None = None,
    reason: str | None = None,
    delay_s: float | None = None,
) -> None:
    """Log the outcome (``succeeded``, ``retry``, ``waiting``, ``expired``, ``failed``) of one attempt."""
    fields: dict[str, Any] = {
        "pipeline": pipeline,
        "item": log_limits.cut_value(item),
        "outcome": outcome,
        "attempt": attempt,
        "duration_ms": round(duration_s * 1000, 1),
    }
    if kind:
        fields["error_class"] = kind
    if reason:
        fields["reason"] = log_limits.cut(reason)
    if delay_s is not None:
        fields["retry_in_s"] = round(delay_s, 3)
    level = logging.WARNING if outcome == "failed" else logging.INFO
    logger.log(level, "%s", json.dumps(fields, default=str, separators=(",", ":")), extra={"backlane": fields})
    metrics.observe_outcome(pipeline, outcome, kind, duration_s)
    attempts.note(pipeline, item, outcome, attempt, reason)
