"""Which messages may carry backlane's own options (placeholder: accepts everything)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dramatiq.message import Message

if TYPE_CHECKING:
    from backlane.messaging.broker import BacklaneBroker


def problem_of(broker: BacklaneBroker, queue_name: str, message: Message) -> str | None:
    """Why ``message`` may not run on ``queue_name`` (wrong actor, forged options), or None."""
    return None


def sign_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """``envelope`` (a Dramatiq message as a dict, e.g. a dead letter being requeued) with
    backlane's signature over its options, so a worker honours them (placeholder: unchanged)."""
    return envelope
