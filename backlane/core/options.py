"""Names of the message options backlane itself writes, in a module of their own so both the
code that writes them (:mod:`backlane.core.processing`, the dead-letter tools) and the code
that decides whether a message may carry them (:mod:`backlane.messaging.signing`) share them
without importing each other."""

from __future__ import annotations

#: Message option holding how many real failures an item has had.
FAILURES_OPTION = "backlane_failures"
#: Message option counting consecutive outage waits, so their backoff grows (and stays capped).
WAITS_OPTION = "backlane_waits"
#: Message option holding a final failure whose row could not be written yet: {"kind", "reason"}.
PENDING_FAILURE_OPTION = "backlane_pending_failure"
#: Message option counting how many times in a row the item found its pipeline paused, so its
#: wait grows (1 s, 2 s, 4 s ... up to controls.paused_recheck_seconds).
PAUSED_OPTION = "backlane_paused"
#: Message option set on a dead letter an operator requeued.
REQUEUED_OPTION = "backlane_requeued"
#: Message option holding backlane's signature over the envelope (backlane.messaging.signing):
#: it is what makes the options above count; a requeued message is signed anew.
SIGNATURE_OPTION = "backlane_signature"
