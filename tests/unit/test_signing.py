"""Signing and checking messages (backlane.messaging.signing): what a queue runs and which
options a worker honours. Pure: a stand-in broker holding only actors and a key."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from dramatiq.message import Message
from dramatiq.middleware import Callbacks, Pipelines
from pydantic import SecretStr

from backlane.app import build_middleware
from backlane.core.options import PENDING_FAILURE_OPTION, REQUEUED_OPTION, SIGNATURE_OPTION
from backlane.messaging import signing
from backlane.messaging.broker import BacklaneBroker
from backlane.settings import MessageSettings, Settings

KEY = b"k" * 32
OTHER_KEY = b"x" * 32


def broker(key: bytes = KEY) -> Any:
    actors = {
        "process_orders": SimpleNamespace(queue_name="orders"),
        "process_tracks": SimpleNamespace(queue_name="orders"),  # a second actor on the same queue
        "order_created": SimpleNamespace(queue_name="orders_inbox"),
        "discover_orders": SimpleNamespace(queue_name="discover"),
    }
    return SimpleNamespace(actors=actors, signing_key=key)


def message(actor: str = "process_orders", queue: str = "orders", **options: Any) -> Message:
    return Message(queue_name=queue, actor_name=actor, args=(7,), kwargs={}, options=dict(options))


def over_the_wire(msg: Message) -> Message:
    """What a consumer decodes from what the broker encoded."""
    return Message.decode(msg.encode())


def signed(msg: Message, key: bytes = KEY) -> Message:
    signing.sign_message(broker(key), msg)
    return over_the_wire(msg)


def test_a_signed_message_keeps_its_options_and_loses_the_signature() -> None:
    options = {"retries": 2, "backlane_failures": 2, PENDING_FAILURE_OPTION: {"kind": "permanent", "reason": "r"}}
    problem, admitted = signing.checked(broker(), "orders", signed(message(**options)))
    assert problem is None
    assert admitted.options == options


def test_a_message_without_options_needs_no_signature() -> None:
    msg = message()
    signing.sign_message(broker(), msg)
    assert msg.options == {}
    assert signing.checked(broker(), "orders", over_the_wire(msg)) == (None, over_the_wire(msg))


@pytest.mark.parametrize("option", sorted(signing.CONTROLLED_OPTIONS))
def test_every_controlled_option_unsigned_is_refused_by_name(option: str) -> None:
    problem, _ = signing.checked(broker(), "orders", over_the_wire(message(**{option: 1})))
    assert problem == f"option {option} is set only by backlane; this message is not signed by it"


def test_the_forged_pending_failure_of_the_issue_is_refused_on_its_own_queue_and_elsewhere() -> None:
    forged = message(**{PENDING_FAILURE_OPTION: {"kind": "permanent", "reason": "forged"}})
    assert signing.checked(broker(), "orders", forged)[0] == (
        "option backlane_pending_failure is set only by backlane; this message is not signed by it"
    )
    on_inbox = message(queue="orders_inbox", **{PENDING_FAILURE_OPTION: {"kind": "permanent", "reason": "forged"}})
    assert signing.checked(broker(), "orders_inbox", on_inbox)[0] == (
        "actor 'process_orders' does not belong to queue 'orders_inbox'"
    )


@pytest.mark.parametrize(
    ("actor", "queue", "belongs"),
    [
        ("process_orders", "orders", True),
        ("process_orders", "orders.DQ", True),
        ("order_created", "orders_inbox", True),
        ("order_created", "orders_inbox.DQ", True),
        ("discover_orders", "discover", True),
        ("process_orders", "orders_inbox", False),
        ("discover_orders", "orders_inbox", False),
        ("order_created", "orders", False),
        ("process_orders", "discover", False),
    ],
)
def test_a_queue_runs_only_its_own_actors(actor: str, queue: str, belongs: bool) -> None:
    problem, _ = signing.checked(broker(), queue, message(actor=actor, queue=queue))
    assert (problem is None) == belongs
    if not belongs:
        assert problem == f"actor {actor!r} does not belong to queue {queue!r}"


def test_unknown_options_from_the_wire_are_dropped() -> None:
    problem, admitted = signing.checked(broker(), "orders", message(colour="blue", nested={"a": 1}))
    assert problem is None
    assert admitted.options == {}
    assert admitted.args == (7,) and admitted.actor_name == "process_orders"


def test_tampered_arguments_void_the_signature() -> None:
    good = signed(message(**{REQUEUED_OPTION: True}))
    tampered = Message(**{**good.asdict(), "args": [8]})
    problem, _ = signing.checked(broker(), "orders", tampered)
    assert problem == "option backlane_requeued is set only by backlane; its signature does not match"


@pytest.mark.parametrize("field", ["options", "kwargs", "message_id", "message_timestamp"])
def test_any_tampered_field_voids_the_signature(field: str) -> None:
    good = signed(message(retries=1))
    changes = {"options": {**good.options, "retries": 0}, "kwargs": {"x": 1}, "message_id": "m2"}
    changes["message_timestamp"] = good.message_timestamp + 1
    tampered = Message(**{**good.asdict(), field: changes[field]})
    assert signing.checked(broker(), "orders", tampered)[0] is not None


def test_a_signature_under_another_key_is_refused() -> None:
    msg = signed(message(retries=1), key=OTHER_KEY)
    assert signing.checked(broker(KEY), "orders", msg)[0] == (
        "option retries is set only by backlane; its signature does not match"
    )


def test_a_signature_does_not_carry_over_to_another_actor_or_queue() -> None:
    good = signed(message(retries=1))
    other_actor = Message(**{**good.asdict(), "actor_name": "process_tracks"})
    assert "signature does not match" in (signing.checked(broker(), "orders", other_actor)[0] or "")
    # Signed for the delay queue, replayed onto the work queue (its eta would be ignored there).
    delayed = signed(message(queue="orders.DQ", eta=1))
    assert signing.checked(broker(), "orders.DQ", delayed)[0] is None
    assert "signature does not match" in (signing.checked(broker(), "orders", delayed)[0] or "")


def test_a_garbage_signature_is_refused_like_none() -> None:
    msg = message(retries=1, **{SIGNATURE_OPTION: ["not", "a", "string"]})
    assert "signature does not match" in (signing.checked(broker(), "orders", msg)[0] or "")
    problem, admitted = signing.checked(broker(), "orders", message(colour="blue", **{SIGNATURE_OPTION: "00"}))
    assert problem is None and admitted.options == {}


def test_what_the_masstransit_adapter_built_is_taken_as_built() -> None:
    built = message(actor="order_created", queue="orders_inbox", masstransit={"content_type": "application/json"})
    assert signing.checked(broker(), "orders_inbox", built, built_here=True) == (None, built)
    assert signing.checked(broker(), "orders_inbox", built)[0] is not None  # the same options from the wire


def test_sign_envelope_replaces_an_old_signature_and_survives_json() -> None:
    letter = signed(message(retries=3)).asdict()
    letter["options"] = {REQUEUED_OPTION: True, SIGNATURE_OPTION: letter["options"][SIGNATURE_OPTION]}
    body = json.dumps(signing.sign_envelope(letter, KEY)).encode()
    problem, admitted = signing.checked(broker(), "orders", Message.decode(body))
    assert problem is None
    assert admitted.options == {REQUEUED_OPTION: True}


def test_sign_envelope_signs_only_what_a_requeue_needs() -> None:
    letter = message(**{REQUEUED_OPTION: True, "masstransit": {"content_type": "x"}}).asdict()
    letter["options"].update({"max_retries": 0, "on_success": "process_orders", "pipe_target": {}, "colour": 1})
    signed_envelope = signing.sign_envelope(letter, KEY)
    assert set(signed_envelope["options"]) == {REQUEUED_OPTION, "masstransit", SIGNATURE_OPTION}
    problem, admitted = signing.checked(broker(), "orders", Message.decode(json.dumps(signed_envelope).encode()))
    assert problem is None and set(admitted.options) == {REQUEUED_OPTION, "masstransit"}


def test_sign_envelope_fills_in_the_id_and_timestamp_it_signs() -> None:
    envelope = {"queue_name": "orders", "actor_name": "process_orders", "args": [7], "kwargs": {}}
    envelope["options"] = {REQUEUED_OPTION: True}
    signed_envelope = signing.sign_envelope(envelope, KEY)
    assert signed_envelope["message_id"] and signed_envelope["message_timestamp"]
    decoded = Message.decode(json.dumps(signed_envelope).encode())
    assert signing.checked(broker(), "orders", decoded)[0] is None
    assert "options" not in envelope or SIGNATURE_OPTION not in envelope["options"], "the input is left alone"


def test_the_broker_signs_in_its_enqueue_path_after_the_middleware() -> None:
    backlane_broker = BacklaneBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[], signing_key=KEY)
    msg = message(queue="orders.DQ", eta=123, retries=1)
    backlane_broker.emit_before("enqueue", msg, 10)
    assert SIGNATURE_OPTION in msg.options
    problem, admitted = signing.checked(broker(), "orders.DQ", over_the_wire(msg))
    assert problem is None and admitted.options == {"eta": 123, "retries": 1}


def test_the_key_comes_from_the_setting_else_from_the_database_url() -> None:
    base = Settings()
    derived = signing.key_of(base)
    other_db = base.model_copy(
        update={"database": base.database.model_copy(update={"url": SecretStr("postgresql://u:p@h/db")})}
    )
    configured = base.model_copy(update={"messages": MessageSettings(signing_key=SecretStr("s" * 16))})
    assert len({derived, signing.key_of(other_db), signing.key_of(configured)}) == 3
    assert signing.key_of(base) == derived, "every process with the same settings signs alike"
    assert "s" * 16 not in repr(configured) and "s" * 16 not in str(configured.model_dump())


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        MessageSettings(signing_key=SecretStr("short"))


def test_dramatiq_pipelines_and_callbacks_are_off_unless_turned_on() -> None:
    base = Settings()
    base = base.model_copy(update={"worker": base.worker.model_copy(update={"metrics_port": 0})})
    kinds = {type(m) for m in build_middleware(base)}
    assert Pipelines not in kinds and Callbacks not in kinds
    on = base.model_copy(update={"messages": MessageSettings(dramatiq_composition=True)})
    kinds = {type(m) for m in build_middleware(on)}
    assert Pipelines in kinds and Callbacks in kinds
