"""Each item's tries and last outcome, kept for the dashboard without a write on the happy path.

:func:`note` sees every outcome :mod:`backlane.core.outcomes` records and keeps, per
pipeline and row id, one ``item_attempts`` row (:class:`~backlane.db.models.ItemAttempts`):

* a retryable failure (``retry``): attempt *n* ``retrying`` with its reason;
* a final failure (``failed``): attempt *n* ``failed`` with its reason;
* a success after failures (attempt > 1): attempt *n* ``succeeded`` (the last failure's
  reason is kept);
* a first-try success writes nothing: the dashboard shows such a row as one try.

Waits are not tries: neither "the server said wait" nor an outage of our own database
or broker (:class:`~backlane.errors.Unavailable`) spends the item's budget, and the
latter's write would fail anyway. The attempt number is the one the outcome line
carries, the failures the message has had plus one: it counts the item's *latest run*,
since its message was sent. A requeued dead letter starts a new run with a fresh budget
(its attempt options are dropped), so its first recorded try overwrites the old run's
record with attempt 1, 2, …; a done row whose record says otherwise was done by a later
run's first try (the dashboard reads it so).

The write is a single upsert and best-effort: if it fails, one bounded warning is
logged and the item's retry accounting and outcome are exactly what they would be
without it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func

from backlane.core.items import is_row_id
from backlane.core.log_limits import cut
from backlane.db.engine import Database
from backlane.db.models.attempts import FAILED, RETRYING, SUCCEEDED, ItemAttempts

logger = logging.getLogger("backlane.attempts")

#: The outcomes (as :func:`backlane.core.outcomes.record` names them) worth a record, and what it says.
RECORDED = {"retry": RETRYING, "failed": FAILED, "succeeded": SUCCEEDED}


def worth_recording(item: Any, outcome: str, attempt: int) -> bool:
    """Whether this outcome changes what the dashboard shows for ``item`` (a first-try success does not)."""
    if not is_row_id(item) or outcome not in RECORDED:
        return False
    return attempt > 1 or RECORDED[outcome] != SUCCEEDED


def note(pipeline: str, item: Any, outcome: str, attempt: int, reason: str | None) -> None:
    """Record the outcome of try ``attempt`` of ``item`` when it is worth it; never raises."""
    if not worth_recording(item, outcome, attempt):
        return
    from backlane.core.runtime import installed_runtime

    runtime = installed_runtime()
    db = runtime.open_database if runtime is not None else None
    if runtime is None or db is None:
        return  # no database in this process (a unit test): nothing to keep
    try:
        write(db, pipeline, item, RECORDED[outcome], attempt, reason, runtime.clock.now())
    except Exception as exc:
        logger.warning(
            "could not record attempt %d (%s) of %s item %s: %s",
            attempt,
            outcome,
            pipeline,
            item,
            cut(f"{type(exc).__name__}: {exc}", 200),
        )


def write(
    db: Database, pipeline: str, item: Any, outcome: str, attempt: int, reason: str | None, now: datetime
) -> None:
    """Upsert the record of ``item``: its attempts and last outcome; a success keeps the last reason."""
    if db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        insert: Any = pg_insert(ItemAttempts)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert(ItemAttempts)
    values = {
        "pipeline": pipeline,
        "item_id": str(item),
        "attempts": attempt,
        "last_outcome": outcome,
        "last_reason": cut(reason) if reason else None,
        "updated_at": now,
    }
    table = ItemAttempts.__table__
    statement = insert.values(**values).on_conflict_do_update(
        index_elements=[table.c.pipeline, table.c.item_id],
        set_={
            "attempts": insert.excluded.attempts,
            "last_outcome": insert.excluded.last_outcome,
            "last_reason": func.coalesce(insert.excluded.last_reason, table.c.last_reason),
            "updated_at": insert.excluded.updated_at,
        },
    )
    with db.statement() as connection:
        connection.execute(statement)
