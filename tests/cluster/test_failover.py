"""PostgreSQL failover on the namespaced pair of :mod:`devtools.pg_cluster`, in CI: one short test.

backlane's engine on the multi-host URL writes to the primary, the primary is SIGKILLed and the
standby promoted, and the same engine's next transaction lands on the new primary, where every
row committed before the kill is (the standby streamed it). The runs with orders in flight
(kill, host cut, switchover, split brain) are by hand: ``python -m tests.cluster failover``.
Needs root and iproute2: without them the module fails with the fix, it is never skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from backlane.db.engine import Database
from devtools.cluster import ClusterUnavailable, check_can_build
from devtools.infra.postgres import MissingPostgres, find_pg_bin
from devtools.pg_cluster import FailoverCluster
from tests.cluster.failover import BY_NAME, FAILOVER, FailoverInfra
from tests.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[FailoverCluster]:
    try:
        check_can_build()
    except ClusterUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    if find_pg_bin() is None:
        pytest.fail(str(MissingPostgres()), pytrace=False)
    built = FailoverCluster(rabbit_nodes=0, worker_hosts=0)
    built.start()
    try:
        yield built
    finally:
        built.close()


def test_the_multi_host_url_finds_the_promoted_standby(cluster: FailoverCluster) -> None:
    pair = cluster.pair
    url = pair.create_database("failover_probe")
    assert "target_session_attrs=read-write" in url and url.count(":5432") == 2
    db = Database(url, pool_size=2, connect_timeout=3)
    try:
        with db.connection() as conn:
            conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY)"))
            conn.execute(text("INSERT INTO probe SELECT generate_series(1, 100)"))
        with db.connection() as conn:
            assert conn.execute(text("SELECT host(inet_server_addr())")).scalar() == pair.nodes["db"].host
        wait_until(lambda: pair.lag_bytes() == 0, timeout=20, what="the standby caught up")
        pair.kill_primary()
        pair.promote()
        promoted = time.monotonic()

        def written() -> bool:
            try:
                with db.connection() as conn:
                    conn.execute(text("INSERT INTO probe VALUES (101)"))
                return True
            except Exception:  # the pooled connection to the dead primary fails once, then reconnects
                return False

        wait_until(written, timeout=30, what="a write through the multi-host URL after the promotion")
        assert time.monotonic() - promoted < 10
        with db.connection() as conn:
            assert conn.execute(text("SELECT host(inet_server_addr())")).scalar() == pair.nodes["db2"].host
            assert conn.execute(text("SELECT count(*) FROM probe")).scalar() == 101
    finally:
        db.dispose()


@pytest.mark.by_hand  # minutes with orders in flight: python -m tests.cluster failover runs them all
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_a_failover_with_orders_in_flight_loses_nothing_and_places_nothing_twice(name: str) -> None:
    infra = FailoverInfra()
    try:
        infra.start()
        outcome = BY_NAME[name].func(infra, FAILOVER)
    finally:
        infra.close()
    detail = "\n  ".join([*outcome.failures(), "notes:", *outcome.notes])
    assert outcome.ok, f"{outcome.fault}:\n  {detail}"
    assert outcome.orders_settled == outcome.orders, detail
