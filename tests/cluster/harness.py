"""The fault harness of :mod:`tests.faults` on the namespaced cluster of :mod:`devtools.cluster`.

:class:`ClusterInfra` stands in for the single-node :class:`~tests.faults.harness.Infra`:
the same :class:`~tests.faults.harness.FaultRun` (fresh database, simulator, workers,
clock, thousands of orders) and the same accounting (database, simulator counts per
request id, the ``.XQ`` queues) run on it, with

* every process's ``BACKLANE_BROKER__URL`` listing the three nodes (``heartbeat=5``, short
  socket timeouts) and ``BACKLANE_BROKER__QUEUE_TYPE=quorum``;
* workers alternating between the hosts ``w1`` and ``w2``, the first clock on ``w1``
  and a second one (when a run has two) on ``w2``, PostgreSQL and the simulator on ``db``;
* the harness's own connections (publishing by hand, reading dead letters, the
  management API) going to a node that is up and reachable at that moment.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx

from devtools.cluster import Cluster, ClusterNode
from devtools.stack import Placement
from tests.faults.harness import MGMT_AUTH, Infra, Scale

#: Hosts the workers take turns on; the clocks too (first clock on w1).
WORKER_HOSTS = ("w1", "w2")

#: >= 2,000 orders per fault (the issue's bar), a lease short enough that a cut-off host's rows
#: come back within the run, a settle timeout that allows for quorum queues on a shared 2-core machine.
CLUSTER_FULL = Scale("full", orders=2000, tracks=100, latency_ms=60, settle_timeout=480, lease_seconds=45)
#: The CI run: a few hundred orders, same faults.
CLUSTER_CI = Scale("ci", orders=300, tracks=20, latency_ms=100, settle_timeout=240, lease_seconds=30)


class ClusterInfra(Infra):
    """A :class:`Cluster` behind the :class:`Infra` interface the fault runs use."""

    queue_type = "quorum"

    def __init__(self, base_dir: Path | None = None) -> None:
        self.cluster = Cluster(base_dir)
        self.base_dir = self.cluster.base_dir
        self.postgres = self.cluster.postgres
        self.rabbitmq = self.cluster.nodes[0]

    def start(self) -> ClusterInfra:
        self.cluster.start()
        return self

    def ensure_up(self) -> None:
        """A scenario that failed half-way may leave a host cut off or a node down."""
        for host in self.cluster.hosts:
            if self.cluster.is_cut(host):
                self.cluster.heal(host)
        for node in self.cluster.nodes:
            if not node.is_running():
                node.start()
        if not self.postgres.is_running():
            self.postgres.start()

    def close(self) -> None:
        self.cluster.close()

    def broker_url(self) -> str:
        return self.cluster.amqp_urls()

    def amqp_url(self) -> str:
        return self.cluster.live_node().amqp_url

    def management_url(self) -> str:
        return self.cluster.live_node().management_url

    def place(self, kind: str, index: int, host: str = "") -> Placement | None:
        name = "db" if kind == "simulator" else host or WORKER_HOSTS[index % len(WORKER_HOSTS)]
        where = self.cluster.hosts[name]
        return Placement(host=name, address=where.address, prefix=where.prefix())

    # -- reading the cluster ----------------------------------------------------

    def queue_info(self, queue: str) -> dict[str, object]:
        url = f"{self.management_url()}/api/queues/%2F/{queue}"
        return dict(httpx.get(url, auth=MGMT_AUTH, timeout=10).json())

    def leader_of(self, queue: str) -> ClusterNode:
        """The node leading quorum queue ``queue`` (the first node when it cannot be told)."""
        with contextlib.suppress(httpx.HTTPError, ValueError, StopIteration):
            leader = self.queue_info(queue).get("leader")
            return next(n for n in self.cluster.nodes if n.nodename == leader)
        return self.cluster.nodes[0]

    def wait_cluster_whole(self, timeout: float = 120) -> float:
        """Wait until every node runs and sees the others; returns the seconds it took."""
        began = time.monotonic()
        names = {n.nodename for n in self.cluster.nodes}
        while time.monotonic() - began < timeout:
            with contextlib.suppress(Exception):
                for node in self.cluster.nodes:
                    status = self.cluster.cluster_status(node)
                    if set(status.get("running_nodes", [])) != names or status.get("partitions"):  # type: ignore[call-overload]
                        break
                else:
                    return time.monotonic() - began
            time.sleep(1)
        raise RuntimeError(f"the cluster is not whole after {timeout:.0f}s")
