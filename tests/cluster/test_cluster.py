"""backlane on a real three-node RabbitMQ cluster (network namespaces, quorum queues), in CI.

One cluster for the module (about 25 s to build): every queue backlane declares is a
quorum queue; a queue of the other type is one line naming the migration; a publisher
waiting for confirms loses nothing when the queue's leader node is killed; and a run
with a few hundred orders loses none and places none twice when the node leading the
orders queue is killed mid-run and restarted. Needs root and iproute2: without them
the module fails with the fix, it is never skipped. ``scripts/cluster-faults`` runs
the four cluster faults at full scale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pika
import pytest

from backlane.errors import QUEUE_MIGRATION_DOC, QueueTypeMismatch
from backlane.messaging.broker import BacklaneBroker
from backlane.messaging.publishing import Outgoing
from devtools.cluster import ClusterUnavailable, check_can_build, clean_stale, ip
from devtools.infra.postgres import MissingPostgres, find_pg_bin
from devtools.infra.rabbitmq import MissingRabbitMQ, find_rabbitmq_server
from devtools.sample import create_orders
from tests.cluster.harness import CLUSTER_CI, ClusterInfra
from tests.faults.harness import fault_run
from tests.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def infra() -> Iterator[ClusterInfra]:
    try:
        check_can_build()
    except ClusterUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    if find_rabbitmq_server() is None:
        pytest.fail(str(MissingRabbitMQ()), pytrace=False)
    if find_pg_bin() is None:
        pytest.fail(str(MissingPostgres()), pytrace=False)
    cluster = ClusterInfra().start()
    try:
        yield cluster
    finally:
        cluster.close()


def _channel(infra: ClusterInfra) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(infra.amqp_url()))
    return connection, connection.channel()


def test_every_queue_backlane_declares_is_a_quorum_queue(infra: ClusterInfra) -> None:
    env = {"BACKLANE_CATALOG__EVENT_MASSTRANSIT_NAMESPACE": "SharedContracts"}
    with fault_run(infra, "declarations", CLUSTER_CI, env=env) as run:  # declare-queues runs in setup
        types = infra.cluster.queue_types()
        said = run.cli("declare-queues").stdout
    work = [line.split()[1] for line in said.splitlines() if line.startswith("declared ") and "(+" in line]
    work = [name for name in work if name != "exchange"]
    expected = {q for name in work for q in (name, f"{name}.DQ", f"{name}.XQ")}
    expected |= {"discover", "orders", "orders_inbox", "catalog.events.recent"}
    expected |= {"SharedContracts:CatalogSectionRefreshed.recent", "SharedContracts:OrderCreated"} - {
        "SharedContracts:OrderCreated"  # an exchange (bound to orders_inbox), not a queue
    }
    missing = sorted(expected - set(types))
    assert not missing, f"not declared: {missing}; declared: {sorted(types)}"
    classic = {name: kind for name, kind in types.items() if kind != "quorum"}
    assert not classic, f"not quorum: {classic}"
    assert len(types) >= 16, types


def test_a_queue_of_the_other_type_is_one_line_naming_the_migration(infra: ClusterInfra) -> None:
    # An existing deployment's queue, declared as backlane declares it with queue_type=classic.
    legacy = BacklaneBroker(url=infra.broker_url(), queue_type="classic", middleware=[], reconnect_timeout=20)
    try:
        legacy.declare_queue("legacy_probe", ensure=True)
    finally:
        legacy.close()
    broker = BacklaneBroker(url=infra.broker_url(), queue_type="quorum", middleware=[], reconnect_timeout=20)
    try:
        with pytest.raises(QueueTypeMismatch) as raised:
            broker.declare_queue("legacy_probe", ensure=True)
    finally:
        broker.close()
    line = str(raised.value)
    assert "\n" not in line
    assert "'legacy_probe' exists on RabbitMQ as a classic queue" in line
    assert "BACKLANE_BROKER__QUEUE_TYPE is quorum" in line and QUEUE_MIGRATION_DOC in line

    # The command: classic settings against the cluster's quorum queues, one line, status 2.
    classic = {"BACKLANE_BROKER__QUEUE_TYPE": "classic"}
    with fault_run(infra, "declare classic on quorum", CLUSTER_CI) as run:
        result = subprocess.run(
            [sys.executable, "-m", "backlane.cli", "declare-queues"],
            env={**os.environ, **run.stack.env, **classic},
            capture_output=True,
            text=True,
            timeout=120,
        )
        # A worker: the same line, and it stops instead of retrying a declaration that cannot succeed.
        worker = run.stack.start_worker(processes=1, threads=2, extra_env=classic, on=infra.place("worker", 0))
        assert worker.proc is not None
        try:
            code = worker.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not stop within 60 s:\n{worker.log_tail(300)}")
        log = worker.log_tail(300)
    assert code != 0, log
    said = [line for line in log.splitlines() if "as a quorum queue but BACKLANE_BROKER__QUEUE_TYPE is classic" in line]
    assert len(said) == 1 and "Traceback" not in log, log
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "as a quorum queue but BACKLANE_BROKER__QUEUE_TYPE is classic" in lines[0], lines
    assert QUEUE_MIGRATION_DOC in lines[0]
    connection, channel = _channel(infra)
    try:
        for name in ("legacy_probe", "legacy_probe.DQ", "legacy_probe.XQ"):
            channel.queue_delete(name)
    finally:
        connection.close()


def test_confirmed_publishes_survive_the_leader_being_killed(infra: ClusterInfra) -> None:
    queue = f"confirm_probe_{uuid.uuid4().hex[:6]}"
    broker = BacklaneBroker(url=infra.broker_url(), queue_type="quorum", middleware=[], reconnect_timeout=60)
    broker.declare_queue(queue, ensure=True)
    confirmed: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def publish() -> None:
        try:
            while not stop.is_set():
                batch = [Outgoing(queue, b'{"probe": 1}', str(uuid.uuid4())) for _ in range(50)]
                broker.publish(batch)  # returns once every message is confirmed
                confirmed.extend(out.message_id for out in batch)
                time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=publish)
    thread.start()
    victim = None
    try:
        wait_until(lambda: len(confirmed) >= 200 or errors, timeout=60, what="publishing under way")
        victim = infra.leader_of(queue)
        before = len(confirmed)
        victim.kill()
        # Four batches confirmed after the kill (at most one was in flight before it), or the
        # publisher failed: whichever comes first, instead of a fixed wait.
        wait_until(lambda: len(confirmed) - before >= 200 or errors, timeout=90, what="confirms after the kill")
        after_kill = len(confirmed) - before
    finally:
        stop.set()
        thread.join(120)
        broker.close()
        if victim is not None:
            victim.start()
    assert not errors, errors
    assert after_kill > 0, "nothing was confirmed after the leader died"

    got: list[str] = []
    connection, channel = _channel(infra)
    try:
        channel.basic_qos(prefetch_count=1000)
        for method, props, _body in channel.consume(queue, auto_ack=True, inactivity_timeout=3):
            if method is None:
                break
            got.append(props.message_id)
        channel.cancel()
        channel.queue_delete(queue)
    finally:
        connection.close()
    missing = set(confirmed) - set(got)
    assert not missing, f"{len(missing)} of {len(confirmed)} confirmed messages are not in the queue"
    infra.wait_cluster_whole()


@pytest.mark.by_hand  # 3 minutes: scripts/cluster-faults runs it, and BACKLANE_TEST_BY_HAND=1 here
def test_a_node_killed_mid_run_loses_nothing_and_places_nothing_twice(infra: ClusterInfra) -> None:
    """Transient API failures (retries through the .DQ delay queues) and orders the API rejects
    for good (failed rows, dead letters in the quorum .XQ) too, while the orders leader dies."""
    with fault_run(infra, "node kill -9 mid-run", CLUSTER_CI, sim={"failure_rate": 0.1}) as run:
        bad = create_orders(run.db, 5, datetime.now(UTC), payload={"items": []})
        run.order_ids += bad
        run.start()
        run.wait_settled_part(0.25)
        victim = infra.leader_of("orders")
        before = run.settled_orders()
        victim.kill()
        # The node stays down until the workers have visibly carried on without it.
        wait_until(lambda: run.settled_orders() - before >= 20, timeout=90, what="orders settled with the leader down")
        resumed = run.settled_orders() - before
        victim.start()
        run.clear_fault()
        run.wait_settled()
        outcome = run.account()
        letters = run.dead_letters()
    detail = "\n  ".join([*outcome.failures(), "notes:", *outcome.notes])
    assert outcome.ok, f"{outcome.fault}:\n  {detail}"
    assert resumed > 0, f"the workers did not carry on while {victim.nodename} was down"
    assert outcome.orders_settled == outcome.orders - len(bad), detail
    assert outcome.failed_with_reason == len(bad), detail
    # Every rejected order has its dead letter in the quorum orders.XQ (account() matched each
    # letter to its failed row), also when the connection carrying it died between the row's
    # write and the letter: the redelivered message finds its row failed and writes it again.
    # A letter may come twice (written, then its ack lost): the same items, not the same count.
    lettered = {letter["body"].get("args", [None])[0] for letter in letters if letter["queue"] == "orders"}
    assert lettered == set(bad), letters
    infra.wait_cluster_whole()


def test_what_a_dead_run_left_behind_is_removed_by_the_next() -> None:
    """A run that was SIGKILLed cannot tear its namespaces and bridge down: the next run does."""
    try:
        check_can_build()
    except ClusterUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    dead = next(pid for pid in range(3_999_999, 3_000_000, -1) if not os.path.exists(f"/proc/{pid}"))
    namespace, bridge = f"blc{dead}-r1", f"blc{dead}br"
    ip("netns", "add", namespace)
    ip("link", "add", bridge, "type", "bridge")
    removed = clean_stale()
    assert namespace in removed and bridge in removed, removed
    assert namespace not in ip("netns", "list").stdout
    assert bridge not in ip("-o", "link", "show").stdout
