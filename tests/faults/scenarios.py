"""One function per fault: set up a run, inject the fault mid-run, wait, account.

Each takes the shared :class:`Infra` and a :class:`Scale` and returns the
scenario's :class:`Outcome` (its line of the table). The checks are the same
for every fault (see :meth:`FaultRun.account`); a scenario adds the checks
only it can make (the requeue command's counts, the malformed messages all
reaching a dead-letter queue, ...) as ``problems``.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devtools.sample import create_orders
from tests.faults.harness import FaultRun, Infra, Outcome, Scale, envelope, fault_run, order_created_body
from tests.faults.stuck_processes import (
    disk_alarm,
    group_sigterm,
    memory_alarm,
    parent_kill9,
    worker_freeze_45s,
    worker_freeze_150s,
)


def worker_sigkill(infra: Infra, scale: Scale) -> Outcome:
    """SIGKILL a random worker at random moments, several times; the suite restarts each at once.

    The moments follow the run's progress (a random point in each of four stretches of it), so
    every kill lands mid-run however fast the machine drains the orders."""
    rng = random.Random(11)
    with fault_run(infra, "worker SIGKILL x4", scale) as run:
        run.start()
        for low, high in ((0.05, 0.15), (0.2, 0.3), (0.35, 0.45), (0.5, 0.6)):
            run.wait_settled_part(rng.uniform(low, high))
            victim = rng.choice(run.workers())
            run.kill(victim)
        settled = run.settled_orders()
        run.notes.append(f"{settled} of {len(run.order_ids)} orders settled at the last kill")
        if settled >= len(run.order_ids):
            run.problems.append("every order had settled before the last kill: not a mid-run fault")
        run.clear_fault()
        run.wait_settled()
        return run.account()


def rabbitmq_kill9(infra: Infra, scale: Scale) -> Outcome:
    """kill -9 the broker mid-run, start it again on the same data."""
    with fault_run(infra, "RabbitMQ kill -9, restart", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        infra.rabbitmq.kill()
        run.sleep(5)
        infra.rabbitmq.start()
        run.clear_fault()
        run.wait_settled()
        return run.account()


def rabbitmq_away_past_reconnect_timeout(infra: Infra, scale: Scale) -> Outcome:
    """The broker away longer than BROKER__RECONNECT_TIMEOUT, across a clock tick; the clock alone
    (no `backlane trigger`) must pick up the orders created during the outage."""
    reconnect = 10
    env = {"BACKLANE_BROKER__RECONNECT_TIMEOUT": str(reconnect)}
    with fault_run(infra, "RabbitMQ away > reconnect timeout, across a tick", scale, env=env, kick=False) as run:
        run.start()
        run.wait_settled_part(0.2, timeout=180)
        infra.rabbitmq.stop(timeout=15)
        down_at = time.time()
        # New work only a tick can find: the clock must live through the outage to send it.
        run.order_ids += create_orders(run.db, max(10, scale.orders // 10), datetime.now(UTC))
        next_tick = (int(down_at // 60) + 1) * 60
        run.sleep(max(reconnect * 3, next_tick + 15 - down_at))
        tick = time.strftime("%H:%M", time.localtime(next_tick))
        run.notes.append(f"broker down {time.time() - down_at:.0f}s, across the tick of {tick}")
        infra.rabbitmq.start()
        run.clear_fault()
        run.wait_settled(timeout=scale.settle_timeout + 60)
        return run.account()


def _postgres_down(infra: Infra, scale: Scale, seconds: float, label: str) -> Outcome:
    with fault_run(infra, label, scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        infra.postgres.stop(timeout=15)
        run.sleep(seconds)
        infra.postgres.start()
        run.clear_fault()
        run.wait_settled()
        return run.account()


def postgres_down_30s(infra: Infra, scale: Scale) -> Outcome:
    """PostgreSQL stopped for 30 s mid-run."""
    return _postgres_down(infra, scale, 30, "PostgreSQL down 30 s")


def postgres_down_3min(infra: Infra, scale: Scale) -> Outcome:
    """PostgreSQL stopped for 3 minutes mid-run."""
    return _postgres_down(infra, scale, 180, "PostgreSQL down 3 min")


def _requeue(run: FaultRun, queue: str, *extra: str) -> tuple[int | None, str]:
    """`backlane dead-letters requeue --queue Q ...`; (count it reports, output)."""
    import subprocess

    try:
        result = run.cli("dead-letters", "requeue", "--queue", queue, *extra, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "did not finish within 120 s"
    text = (result.stdout + result.stderr).strip()
    for line in text.splitlines():
        if line.startswith("requeued "):
            return int(line.split()[1]), text
    return None, text


def _xq_count(run: FaultRun, queue: str) -> int:
    return sum(1 for letter in run.dead_letters() if letter["queue"] == queue)


def order_api_down_then_requeue(infra: Infra, scale: Scale) -> Outcome:
    """The order API down long enough that orders spend their retries and are dead-lettered; then
    back; then the operator requeues the dead letters and every order is placed, once."""
    with fault_run(infra, "order API down, back, dead letters requeued", scale) as run:
        run.start()
        run.wait_settled_part(0.1)
        # An outage answers at once (a gateway's 503). Retried messages go to the back of the queue,
        # so with thousands queued an item is tried only every few seconds: the API stays down
        # until a tenth of the orders have spent their retries (at most 3 minutes).
        run.configure_sim(outage=["orders"], latency_ms=0)
        down_at = time.monotonic()
        while time.monotonic() - down_at < 180:
            run.sleep(3)
            if sum(1 for status, _ in run.order_states().values() if status == "failed") >= len(run.order_ids) // 10:
                break
        run.notes.append(f"order API down {time.monotonic() - down_at:.0f}s")
        run.configure_sim(outage=[], latency_ms=scale.latency_ms)
        run.clear_fault()
        # Let what was in flight finish or fail for good, then requeue what failed.
        deadline = time.monotonic() + scale.settle_timeout
        while time.monotonic() < deadline:
            run.sleep(2)
            states = run.order_states()
            if not any(status in ("pending", "placed") for status, _ in states.values()):
                break
            run.trigger("orders")
        before = _xq_count(run, "orders")
        failed = sum(1 for status, _ in run.order_states().values() if status == "failed")
        reported, output = _requeue(run, "orders", "--all")
        run.notes.append(f"{failed} order(s) failed in the outage, {before} in orders.XQ; requeue: {output[-100:]}")
        if before == 0:
            run.problems.append("the outage dead-lettered nothing: the requeue was not exercised")
        if reported != before:
            run.problems.append(f"requeue reported {reported} with {before} dead letter(s) in orders.XQ")
        run.wait_settled()
        outcome = run.account()
        if outcome.failed_with_reason:
            outcome.problems.append(f"{outcome.failed_with_reason} item(s) still failed after the requeue")
        return outcome


def api_slow_past_timeout(infra: Infra, scale: Scale) -> Outcome:
    """The order API answers after the client has given up (1 s timeout, 2.5 s latency) for 20 s."""
    env = {"BACKLANE_ORDER_API__TIMEOUT": "1"}
    with fault_run(infra, "order API slower than the client timeout", scale, env=env) as run:
        run.start()
        run.wait_settled_part(0.1)
        run.configure_sim(latency_ms=2500)
        run.sleep(20)
        run.configure_sim(latency_ms=scale.latency_ms)
        run.clear_fault()
        run.wait_settled()
        return run.account()


def rate_limited_429(infra: Infra, scale: Scale) -> Outcome:
    """The order API limits placements and answers 429 "wait for X seconds" for 30 s."""
    with fault_run(infra, '429 "wait for X seconds"', scale) as run:
        run.start()
        run.wait_settled_part(0.1)
        run.configure_sim(rate_limits={"orders.create": [max(5, scale.orders // 100), 2]})
        run.sleep(30)
        limited = run.sim_stats()["rate_limited"].get("orders.create", 0)
        run.configure_sim(rate_limits={})
        run.clear_fault()
        run.wait_settled()
        outcome = run.account()
        outcome.notes.append(f"{limited} placement(s) answered 429")
        if not limited:
            outcome.problems.append("no request was rate limited: the fault did not happen")
        return outcome


def order_created_x10(infra: Infra, scale: Scale) -> Outcome:
    """The same OrderCreated published ten times for many orders, while discover also claims them."""
    with fault_run(infra, "same OrderCreated x10", scale) as run:
        run.start()
        chosen = run.order_ids[: max(20, len(run.order_ids) // 4)]
        bodies = [order_created_body(oid) for oid in chosen for _ in range(10)]
        random.Random(3).shuffle(bodies)
        run.publish_many("orders_inbox", bodies)
        run.notes.append(f"{len(bodies)} OrderCreated for {len(chosen)} orders")
        run.clear_fault()
        run.wait_settled()
        return run.account()


MEGABYTES_5 = 5 * 1024 * 1024


def malformed_messages(infra: Infra, scale: Scale) -> Outcome:
    """Every kind of malformed message, on the orders queue and on the OrderCreated inbox: each must
    reach its dead-letter queue with a reason, and none may stop a worker or flood the logs."""
    with fault_run(infra, "malformed messages (every kind)", scale) as run:
        run.start()
        run.wait_settled_part(0.1)
        sent: list[tuple[str, str]] = []

        def by_id(queue: str, body: bytes, message_id: str) -> None:
            run.injected_ids.add(message_id)
            run.publish_raw(queue, body, message_id)
            sent.append((queue, message_id))

        def raw(queue: str, body_text: str) -> None:
            marker = f"fault-marker-{uuid.uuid4().hex}"
            run.injected_markers.add(marker)
            run.publish_raw(queue, (body_text % marker).encode())
            sent.append((queue, marker))

        mid = lambda: str(uuid.uuid4())  # noqa: E731
        for queue in ("orders", "orders_inbox"):
            raw(queue, "this is not JSON %s {")
            raw(queue, '["a JSON list, not an envelope", "%s"]')
            raw(queue, '{"queue_name": "orders", "args": [1], "note": "%s"}')  # no actor_name
            raw(queue, '{"actor_name": "process_orders", "args": [], "kwargs": [], "options": {}, "x": "%s"}')
            raw(queue, "%s" + "x" * MEGABYTES_5)  # 5 MB, not JSON
            by_id(queue, envelope(queue, "no_such_actor", [1], i := mid()), i)
        by_id("orders", envelope("orders", "process_orders", ["abc"], i := mid()), i)
        by_id("orders", envelope("orders", "process_orders", [1, 2], i := mid()), i)
        by_id("orders", envelope("orders", "process_orders", [-5], i := mid()), i)
        by_id("orders", envelope("orders", "process_orders", [10**12], i := mid()), i)  # no such order
        by_id("orders", envelope("orders", "process_orders", ["y" * MEGABYTES_5], i := mid()), i)  # 5 MB envelope
        by_id("orders_inbox", envelope("orders_inbox", "order_created", [{"order_id": -1}], i := mid()), i)
        by_id("orders_inbox", envelope("orders_inbox", "order_created", [{"order_id": 1}], i := mid()), i)
        by_id("orders_inbox", envelope("orders_inbox", "order_created", [{"version": 1}], i := mid()), i)
        by_id("orders_inbox", envelope("orders_inbox", "order_created", [], i := mid()), i)
        by_id(
            "orders_inbox",
            envelope("orders_inbox", "order_created", [{"version": 1, "order_id": 10**12}], i := mid()),
            i,
        )  # valid, for an order that never appears: unknown after its grace period
        run.clear_fault()
        run.sleep(15)  # the grace period of the OrderCreated for a missing order
        run.wait_settled()
        outcome = run.account()

        letters = run.dead_letters()
        texts = [json.dumps(letter["body"]) for letter in letters]
        missing = [what for _queue, what in sent if not any(what in text for text in texts)]
        if missing:
            outcome.problems.append(f"{len(missing)} of {len(sent)} malformed message(s) not in a dead-letter queue")
        outcome.notes.append(f"{len(sent)} malformed message(s) injected")
        log_bytes = sum(p.log_path.stat().st_size for p in run.stack.processes if p.log_path.exists())
        if log_bytes > 2 * 1024 * 1024:
            outcome.problems.append(f"process logs grew to {log_bytes / 1e6:.1f} MB: a 5 MB message was logged whole")
        listing = run.cli("dead-letters", "list", timeout=120)
        if len(listing.stdout) > 2 * 1024 * 1024:
            outcome.problems.append(f"`dead-letters list` printed {len(listing.stdout) / 1e6:.1f} MB")
        return outcome


def work_queue_deleted(infra: Infra, scale: Scale) -> Outcome:
    """The orders work queue deleted on the broker mid-run (an operator's mistake): its messages are
    gone, the workers must get it back and the leases bring every order back."""
    with fault_run(infra, "work queue deleted mid-run", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        response = run.mgmt("DELETE", "/api/queues/%2F/orders")
        if response.status_code not in (200, 204):
            run.problems.append(f"deleting the queue answered {response.status_code}")
        run.clear_fault()
        run.wait_settled(timeout=scale.settle_timeout + scale.lease_seconds)
        outcome = run.account()
        queues = {q["name"]: q for q in run.mgmt("GET", "/api/queues").json()}
        if "orders" not in queues:
            outcome.problems.append("the orders queue was never declared again")
        elif not queues["orders"].get("consumers"):
            outcome.problems.append("no worker consumes the orders queue any more")
        return outcome


def two_clocks_three_workers(infra: Infra, scale: Scale) -> Outcome:
    """Two clocks and three workers at once, on the real clock alone (no trigger)."""
    with fault_run(infra, "two clocks, three workers", scale, workers=3, clocks=2, kick=False) as run:
        run.start()
        run.clear_fault()
        run.wait_settled(timeout=scale.settle_timeout + 60)
        outcome = run.account()
        ticked = [p.name for p in run.stack.processes if "Scheduling Actor(discover_orders)" in p.log_tail(2000)]
        if len([name for name in ticked if name.startswith("clock")]) < 2:
            outcome.problems.append(f"both clocks must have sent discover_orders; only {ticked} did")
        return outcome


def sigterm_mid_run(infra: Infra, scale: Scale) -> Outcome:
    """SIGTERM a worker and the clock mid-run (a deploy); the supervisor starts new ones."""
    with fault_run(infra, "SIGTERM mid-run (worker and clock)", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        run.terminate(run.workers()[0])
        run.terminate(run.clocks()[0])
        run.clear_fault()
        run.wait_settled()
        return run.account()


def requeue_fails_again(infra: Infra, scale: Scale) -> Outcome:
    """Dead letters that fail again when requeued: the command must requeue exactly what was there,
    once, say so, and stop; each message is dead-lettered again with its row failed."""
    bad_count = max(5, scale.orders // 40)
    with fault_run(infra, "requeue of messages that fail again", scale) as run:
        # Orders the API rejects for good (422: no items): failed with the reason, dead-lettered.
        bad = create_orders(run.db, bad_count, datetime.now(UTC), payload={"items": []})
        run.order_ids += bad
        run.start()
        inbox_ids = []
        for _ in range(3):  # OrderCreated for orders that never appear: unknown after the grace period
            inbox_ids.append(message_id := str(uuid.uuid4()))
            run.injected_ids.add(message_id)
            run.publish_raw("orders_inbox", order_created_body(10**12 + len(inbox_ids), message_id), message_id)
        run.clear_fault()
        run.sleep(12)
        run.wait_settled()

        def check(queue: str, expected: int, label: str, *args: str, requeued: int | None = None) -> None:
            before = _xq_count(run, queue)
            if before != expected:
                run.problems.append(f"{label}: {before} dead letter(s) in {queue}.XQ before, expected {expected}")
            reported, output = _requeue(run, queue, *args)
            want = expected if requeued is None else requeued
            if reported != want:
                said = output[-80:]
                run.problems.append(f"{label}: requeue reported {reported}, expected {want}: {said}")
            run.sleep(12 if queue == "orders_inbox" else 4)
            after = _xq_count(run, queue)
            if after != expected:
                run.problems.append(f"{label}: {after} dead letter(s) in {queue}.XQ after, expected {expected}")

        check("orders", bad_count, "orders --all", "--all")
        check("orders", bad_count, "orders --all again", "--all")
        check("orders_inbox", 3, "orders_inbox --all", "--all")
        one = next((letter for letter in run.dead_letters() if letter["queue"] == "orders"), None)
        if one is not None:
            message_id = str(one["body"].get("message_id"))
            check("orders", bad_count, "orders --message-id", "--message-id", message_id, requeued=1)
        run.wait_settled()
        outcome = run.account()
        if outcome.failed_with_reason != bad_count:
            outcome.problems.append(f"{outcome.failed_with_reason} failed item(s), expected the {bad_count} bad orders")
        return outcome


@dataclass(frozen=True)
class Entry:
    name: str
    func: Callable[[Infra, Scale], Outcome]
    #: In the fast subset (CI, `pytest -m faults`): no fault or wait longer than a few seconds.
    fast: bool


SCENARIOS = [
    Entry("worker_sigkill", worker_sigkill, False),  # CI: test_orders_processes, test_worker_supervision
    Entry("rabbitmq_kill9", rabbitmq_kill9, True),
    Entry("rabbitmq_away_past_reconnect_timeout", rabbitmq_away_past_reconnect_timeout, False),
    Entry("postgres_down_30s", postgres_down_30s, False),
    Entry("postgres_down_3min", postgres_down_3min, False),
    Entry("order_api_down_then_requeue", order_api_down_then_requeue, False),
    Entry("api_slow_past_timeout", api_slow_past_timeout, False),
    Entry("rate_limited_429", rate_limited_429, False),
    Entry("order_created_x10", order_created_x10, False),  # CI: test_same_order_created_three_times_places_one_order
    Entry("malformed_messages", malformed_messages, False),  # CI: test_poison_messages, test_forged_messages
    Entry("work_queue_deleted", work_queue_deleted, False),
    Entry("two_clocks_three_workers", two_clocks_three_workers, False),
    Entry("sigterm_mid_run", sigterm_mid_run, False),  # CI: test_operations, test_worker_supervision
    # CI: test_requeue_all_of_messages_that_fail_again_requeues_each_once_and_returns
    Entry("requeue_fails_again", requeue_fails_again, False),
    # Issue 27: a process alive but unable to work (CI: test_frozen_worker, test_worker_supervision,
    # test_broker_blocked_cli hold each fix in seconds).
    Entry("worker_freeze_45s", worker_freeze_45s, False),
    Entry("worker_freeze_150s", worker_freeze_150s, False),
    Entry("parent_kill9", parent_kill9, False),
    Entry("memory_alarm", memory_alarm, False),
    Entry("disk_alarm", disk_alarm, False),
    Entry("group_sigterm", group_sigterm, False),
]

BY_NAME = {entry.name: entry for entry in SCENARIOS}


def run_scenario(entry: Entry, infra: Infra, scale: Scale) -> Outcome:
    """Run one scenario; an exception becomes the outcome's error rather than ending the suite."""
    try:
        return entry.func(infra, scale)
    except Exception as exc:  # the table must still show every scenario
        return Outcome(entry.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
