"""An order keeps the MassTransit ids of the OrderCreated that created or claimed it, and the
dashboard's orders page shows them (and finds the order by its conversation id), on the real
broker; an id a sender forged is not kept, so it never reaches the page."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from actors.orders.models import Order
from backlane.messaging.queues import declare_all
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import HOSTILE, dashboard, item_cells
from tests.integration.test_masstransit_orders import ENVELOPE, content, mt_envelope, publish
from tests.waiting import wait_until

#: mt_envelope's conversation id, replaced by each message's own.
TEMPLATE_CONVERSATION = "3f2c0000-5d8a-0015-c8d5-08dc1f0b7a1e"


@pytest.fixture
def page(app: App) -> Iterator[Any]:
    declare_all(app.broker)  # `backlane declare-queues`: the SharedContracts:OrderCreated exchange
    with dashboard(app) as client:
        yield lambda **params: client.get("/pipelines/orders", params=params).text


def envelope(message: dict[str, Any], message_id: str, conversation_id: str, correlation_id: str | None) -> bytes:
    body = mt_envelope(message, message_id).replace(TEMPLATE_CONVERSATION.encode(), conversation_id.encode())
    if correlation_id is None:
        return body
    return body.replace(b'"messageType"', f'"correlationId": "{correlation_id}",\n  "messageType"'.encode())


def ids_of(app: App, request_id: str) -> tuple[str | None, str | None, str | None] | None:
    with app.db.transaction() as session:
        row = session.execute(
            select(Order.mt_message_id, Order.mt_conversation_id, Order.mt_correlation_id).where(
                Order.request_id == request_id, Order.status == "succeeded"
            )
        ).one_or_none()
    return None if row is None else tuple(row)  # type: ignore[return-value]


def test_an_order_keeps_its_envelopes_ids_and_the_page_shows_them(app: App, worker: Any, page: Any) -> None:
    [existing] = create_orders(app.db, 1, app.clock.now())
    with app.db.transaction() as session:
        existing_request = session.scalar(select(Order.request_id).where(Order.id == existing))
    created_request = str(uuid.uuid4())
    created = (str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()).upper())
    claimed = (str(uuid.uuid4()), str(uuid.uuid4()), None)
    forged_request, forged_message = str(uuid.uuid4()), str(uuid.uuid4())
    forged_conversation = HOSTILE.replace('"', "'") + "x" * 5000  # JSON-safe, not a GUID, oversized

    publish(app, envelope(content(created_request), *created), ENVELOPE, created[0])  # creates its row
    publish(app, envelope({"requestId": existing_request}, *claimed), ENVELOPE, claimed[0])  # claims one
    publish(
        app,
        envelope(content(forged_request), forged_message, forged_conversation, "not-a-guid"),
        ENVELOPE,
        forged_message,
    )

    kept = {
        request: wait_until(lambda r=request: ids_of(app, r), timeout=20, what=f"order {request} placed")
        for request in (created_request, existing_request, forged_request)
    }
    assert kept[created_request] == (created[0], created[1], created[2].lower()), "GUIDs, lower-cased"
    assert kept[existing_request] == claimed
    assert kept[forged_request] == (forged_message, None, None), "a forged id is not kept"

    shown = item_cells(page())
    with app.db.transaction() as session:
        row_ids = {request: order_id for request, order_id in session.execute(select(Order.request_id, Order.id))}
    cells = shown[str(row_ids[created_request])]
    assert (cells["mt_message_id"], cells["mt_conversation_id"], cells["mt_correlation_id"]) == kept[created_request]
    assert shown[str(row_ids[existing_request])]["mt_conversation_id"] == claimed[1]
    assert shown[str(row_ids[forged_request])]["mt_conversation_id"] == ""
    found = page(q=created[1])  # a .NET operator's conversation id finds the order
    assert re.findall(r'data-id="(\d+)"', found) == [str(row_ids[created_request])]
    assert HOSTILE not in page() and HOSTILE not in found
