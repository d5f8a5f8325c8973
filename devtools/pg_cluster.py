"""A PostgreSQL primary and a streaming-replication standby on two hosts of the namespaced cluster.

:class:`FailoverCluster` is :class:`devtools.cluster.Cluster` (one RabbitMQ node by default)
with two more hosts: ``db2`` (the standby) and ``api`` (the simulator, so cutting a database
host off never takes the order API with it). :class:`PgPair` runs the two servers from
Debian's PostgreSQL binaries: ``db`` is initialised as the primary, ``db2`` is made from it
with ``pg_basebackup -R`` through a physical replication slot and streams from it. Every
client gets one multi-host URL (:meth:`PgPair.url`)::

    postgresql+psycopg://postgres@/NAME?host=10.x.y.31:5432,10.x.y.32:5432&target_session_attrs=read-write

so whichever of the two accepts writes is the one libpq settles on.

The faults, for scenarios to combine:

* :meth:`PgPair.kill_primary` SIGKILLs the primary's postmaster and backends (a crash);
* :meth:`PgPair.promote` promotes the standby (``SELECT pg_promote()``), the scripted
  failover a controller such as pg_auto_failover or Patroni would run;
* :meth:`PgPair.switchover` is the planned one: primary stopped cleanly (its walsender ships
  every record first), standby promoted, the old primary rewound (``pg_rewind``) and started
  again as the new primary's standby;
* :meth:`PgPair.partition` puts blackhole routes between a database host and the hosts
  named (a split brain: the old primary still up and reachable by some clients, but not by
  its standby), and :meth:`Cluster.cut` pulls its cable entirely while it keeps accepting
  local connections (:meth:`PgPair.local_psql`, over its Unix socket).

Only addresses inside the namespaces this process creates are used; cleanup is the
cluster's (at exit, on Ctrl-C, and stale namespaces of dead runs by the next run).
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import time
from pathlib import Path

from devtools.cluster import Cluster, Host, ip
from devtools.infra.postgres import PostgresNode, PostgresStartError

#: Server settings both nodes share: what streaming replication and pg_rewind need (the test
#: server's defaults switch full_page_writes off), short TCP keepalives so a cut-off client's
#: backend ends, and the commit durability the scenario asks for.
REPLICATION_OPTIONS = {
    "wal_level": "replica",
    "full_page_writes": "on",
    "wal_log_hints": "on",
    "hot_standby": "on",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_sender_timeout": "10s",
    "wal_receiver_timeout": "10s",
    "idle_in_transaction_session_timeout": "15s",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "max_connections": "300",
}
SLOT = "standby_slot"


class FailoverCluster(Cluster):
    """The cluster with two database hosts (``db`` primary, ``db2`` standby) and ``api``."""

    def __init__(
        self, base_dir: Path | None = None, *, rabbit_nodes: int = 1, synchronous: bool = False, **kwargs: object
    ) -> None:
        options = {**REPLICATION_OPTIONS, "synchronous_commit": "on" if synchronous else "local"}
        if synchronous:
            options["synchronous_standby_names"] = "*"
        super().__init__(base_dir, rabbit_nodes=rabbit_nodes, postgres_options=options, **kwargs)  # type: ignore[arg-type]
        base = int(self.subnet.network_address)
        for name, last in (("db2", 32), ("api", 41)):
            address = str(ipaddress.IPv4Address(base + last))
            self.hosts[name] = Host(name, f"{self.tag}-{name}", address, f"{self.tag}{name}")
        standby = PostgresNode(
            self.base_dir / "postgres2",
            port=5432,
            host=self.hosts["db2"].address,
            netns=self.hosts["db2"].netns,
            trusted_network=str(self.subnet),
            options=options,
        )
        self.pair = PgPair(self, {"db": self.postgres, "db2": standby})

    def start(self) -> FailoverCluster:
        super().start()
        self.pair.attach_standby("db2", fresh=True)
        return self

    def _join_cluster(self) -> None:
        if self.nodes:  # rabbit_nodes=0: the database pair alone
            super()._join_cluster()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pair.nodes["db2"].kill()
        super().close()


class PgPair:
    """Two PostgreSQL servers of a :class:`FailoverCluster`, one primary and one standby."""

    def __init__(self, cluster: Cluster, nodes: dict[str, PostgresNode]) -> None:
        self.cluster = cluster
        self.nodes = nodes
        #: The host whose server accepts writes now.
        self.primary = "db"
        self._blackholes: list[tuple[str, str]] = []
        #: Appended to every multi-host URL's query (e.g. ``&keepalives=0`` to measure without them).
        self.url_extra = ""

    # -- addresses --------------------------------------------------------------------

    @property
    def standby(self) -> str:
        return next(h for h in self.nodes if h != self.primary)

    def url(self, dbname: str = "postgres") -> str:
        """The multi-host URL every client uses, hosts in their original order (db first)."""
        hosts = ",".join(f"{n.host}:{n.port}" for n in self.nodes.values())
        return f"postgresql+psycopg://postgres@/{dbname}?host={hosts}&target_session_attrs=read-write{self.url_extra}"

    def node_url(self, host: str, dbname: str = "postgres") -> str:
        """One server's own URL (reading one side of a split brain)."""
        return self.nodes[host].url(dbname)

    # -- what the fault harness asks of "the database server" ------------------------------

    def is_running(self) -> bool:
        """Both servers up, ``db`` primary and ``db2`` streaming from it (the state a run starts in)."""
        return self.primary == "db" and all(n.is_running() for n in self.nodes.values()) and self.streaming()

    def start(self) -> None:
        """Back to the starting state (after a scenario): ``db`` primary, ``db2`` a fresh standby."""
        self.unpartition()
        for node in self.nodes.values():
            node.kill()
        if self.primary != "db":  # the data of a promoted db2 and a rewound db: start over
            for node in self.nodes.values():
                shutil.rmtree(node.data_dir, ignore_errors=True)
            self.primary = "db"
        self.nodes["db"].start()
        self.attach_standby("db2", fresh=True)

    def create_database(self, name: str) -> str:
        self.nodes[self.primary].create_database(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.nodes[self.primary].drop_database(name)

    # -- replication ---------------------------------------------------------------------

    def _allow_replication(self, host: str) -> None:
        node = self.nodes[host]
        hba = node.data_dir / "pg_hba.conf"
        line = f"host replication all {self.cluster.subnet} trust\n"
        if line not in hba.read_text():
            with hba.open("a") as out:
                out.write(line)
            node.psql("SELECT pg_reload_conf()")

    def attach_standby(self, host: str, *, fresh: bool) -> None:
        """Make ``host`` a standby of the primary: a fresh ``pg_basebackup -R`` through the slot,
        or (``fresh=False``, its data cleanly stopped) ``pg_rewind`` onto the new timeline."""
        primary = self.nodes[self.primary]
        node = self.nodes[host]
        self._allow_replication(self.primary)
        with contextlib.suppress(RuntimeError):  # a slot left from an earlier attach
            primary.psql(f"SELECT pg_drop_replication_slot('{SLOT}')")
        primary.psql(f"SELECT pg_create_physical_replication_slot('{SLOT}')")
        source = f"host={primary.host} port={primary.port} user=postgres dbname=postgres"
        node.kill()
        if fresh:
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node._prepare_dirs()
            node._run(
                [node._bin("pg_basebackup"), "-D", str(node.data_dir), "-d", source, "-X", "stream", "-S", SLOT, "-R"]
            )
        else:
            node._run([node._bin("pg_rewind"), "-D", str(node.data_dir), f"--source-server={source}", "-R"])
            with (node.data_dir / "postgresql.auto.conf").open("a") as conf:
                conf.write(f"primary_slot_name = '{SLOT}'\n")
        node.start()
        self.wait_streaming()

    def streaming(self) -> bool:
        with contextlib.suppress(RuntimeError):
            out = self.nodes[self.primary].psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            return int(out.strip() or 0) > 0
        return False

    def wait_streaming(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.streaming():
            if time.monotonic() > deadline:
                raise PostgresStartError(f"the standby on {self.standby} is not streaming after {timeout:.0f}s")
            time.sleep(0.2)

    def lag_bytes(self) -> int:
        """WAL the primary wrote that the standby has not replayed yet."""
        sql = "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) FROM pg_stat_replication"
        return int(float(self.nodes[self.primary].psql(sql).strip() or 0))

    # -- faults ----------------------------------------------------------------------------

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend (a crash; its data stays)."""
        self.nodes[self.primary].kill()

    def promote(self) -> float:
        """Promote the standby (``pg_promote()``, waiting for it); it is the primary now.
        Returns the time.monotonic() at which it accepts writes."""
        new = self.standby
        out = self.nodes[new].psql("SELECT pg_promote(true, 60)").strip()
        if out != "t":
            raise RuntimeError(f"pg_promote() on {new} answered {out!r}")
        self.primary = new
        return time.monotonic()

    def switchover(self) -> float:
        """Planned: stop the primary cleanly, promote the standby (returns when it accepts
        writes), then rewind the old primary and start it as the new primary's standby."""
        old = self.primary
        self.nodes[old].stop(timeout=30)
        promoted = self.promote()
        self.attach_standby(old, fresh=False)
        return promoted

    def partition(self, host: str, *others: str) -> None:
        """Blackhole routes both ways between ``host`` and each of ``others`` (a partial partition)."""
        for other in others:
            for a, b in ((host, other), (other, host)):
                address = self.cluster.hosts[b].address
                ip("-n", self.cluster.hosts[a].netns, "route", "add", "blackhole", f"{address}/32")
                self._blackholes.append((a, address))

    def unpartition(self) -> None:
        while self._blackholes:
            host, address = self._blackholes.pop()
            ip("-n", self.cluster.hosts[host].netns, "route", "del", "blackhole", f"{address}/32", check=False)

    def local_psql(self, host: str, sql: str, dbname: str = "postgres") -> str:
        """SQL on ``host``'s server over its Unix socket: works while its network is cut."""
        node = self.nodes[host]
        cmd = [node._bin("psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", str(node.socket_dir)]
        cmd += ["-U", "postgres", "-p", str(node.port), "-d", dbname, "-c", sql]
        result = subprocess.run(cmd, env=node._env(), capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql on {host} failed: {sql!r}: {result.stderr.strip()}")
        return result.stdout
