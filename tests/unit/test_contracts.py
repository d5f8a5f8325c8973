from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from backlane.operations.schemas import render
from contracts import MESSAGE_CONTRACTS
from contracts.orders import OrderCreated

SCHEMAS = Path(__file__).resolve().parents[2] / "contracts" / "schemas"


@pytest.mark.parametrize("name", sorted(MESSAGE_CONTRACTS))
def test_published_schema_matches_the_contract(name: str) -> None:
    path = SCHEMAS / f"{name}.schema.json"
    assert path.exists(), f"run `backlane schemas` to publish {path.name}"
    assert path.read_text() == render(name), f"{path.name} drifted from contracts/: run `backlane schemas`"


def test_order_created_accepts_the_documented_wire_example() -> None:
    event = OrderCreated.model_validate(json.loads('{"version": 1, "order_id": 42}'))
    assert event.order_id == 42


@pytest.mark.parametrize(
    "payload",
    [
        {"order_id": 42},
        {"version": 2, "order_id": 42},
        {"version": 1, "order_id": "42"},
        {"version": 1, "order_id": 0},
        {"version": 1, "order_id": 42, "extra": True},
        "42",
    ],
)
def test_order_created_rejects_malformed_payloads(payload: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        OrderCreated.model_validate(payload)


def test_envelope_is_what_a_foreign_publisher_writes() -> None:
    envelope = OrderCreated(version=1, order_id=7).envelope()
    assert envelope == {
        "queue_name": "orders_inbox",
        "actor_name": "order_created",
        "args": [{"version": 1, "order_id": 7}],
        "kwargs": {},
        "options": {},
    }
