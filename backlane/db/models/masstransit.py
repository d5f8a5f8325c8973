"""MassTransit faults backlane owes the .NET side: one row per failed MassTransit message.

Written by :mod:`backlane.messaging.masstransit_faults` when an item that came in MassTransit's
envelope fails for good, keyed by the faulted message's id: a redelivery of the same message, or
a second worker failing it too, finds the row and sends nothing new. The fault's bytes are kept
as built (its ``faultId`` and message id fixed once), so a resend after a crash is the same
message, which a MassTransit consumer's inbox can tell is a duplicate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base


class MassTransitFault(Base):
    __tablename__ = "masstransit_faults"

    #: The faulted message's MassTransit messageId (or, without one, ``pipeline:item``).
    faulted_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    #: The registration that failed it (e.g. ``orders``) and its item, as text.
    pipeline: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str | None] = mapped_column(String(100))
    #: Where the fault goes: an exchange (the fault exchange, or the envelope's fault address).
    exchange: Mapped[str] = mapped_column(String(255))
    #: The fault's AMQP properties (pika's names) and its body, exactly as sent.
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    #: A worker sending it holds it until then; a crashed sender's claim runs out.
    lease_until: Mapped[datetime | None]
    #: When RabbitMQ confirmed it; None while it is owed.
    sent_at: Mapped[datetime | None]
