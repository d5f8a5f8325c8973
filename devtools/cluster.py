"""A small multi-host backlane system on this one machine, for tests, fault runs and benchmarks.

Each "host" is a Linux network namespace of its own with one address on a private
bridge: three RabbitMQ nodes (``r1``..``r3``, one cluster, long node names
``rabbit@10.x.y.z`` so no DNS is needed, ``pause_minority``), two worker hosts
(``w1``, ``w2``: workers, and the clock on ``w1``) and ``db`` (PostgreSQL and the
simulator). The driving process stays in the root namespace, where the bridge
holds the subnet's first address, and only ever talks to addresses inside it.

A host is cut off from everything (its network "cable" pulled) with :meth:`Cluster.cut`
and plugged back with :meth:`Cluster.heal`; a RabbitMQ node is killed (``kill -9``) and
started again on the same data with its :class:`ClusterNode`'s ``kill``/``start``.

Names carry this process's id (``blc<pid>-r1``, bridge ``blc<pid>br``), and the
subnet is a random ``10.a.b.0/24`` that no interface or route of the machine uses,
so concurrent runs do not collide. Everything is torn down by :meth:`Cluster.close`
(also at interpreter exit, on Ctrl-C, or, for a run that was SIGKILLed, by the next
run: namespaces and links whose pid is dead are removed). Needs root and iproute2.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.infra.postgres import PostgresNode
from devtools.infra.rabbitmq import RabbitMQNode

#: Prefix of every namespace and link this module makes; the pid of its owner follows.
PREFIX = "blc"
_OWNED = re.compile(rf"^{PREFIX}(\d+)")

IPROUTE_HINT = (
    "the cluster harness builds network namespaces with iproute2 as root. Fix: run as root "
    "(or with sudo), and install iproute2 if `ip` is missing: apt-get install -y iproute2 "
    "(scripts/bootstrap does it)."
)


class ClusterUnavailable(RuntimeError):
    """This machine cannot build the namespaced cluster; the message says what to fix."""


def check_can_build() -> None:
    """Raise :class:`ClusterUnavailable` (with the fix) unless we are root with ``ip`` installed."""
    if shutil.which("ip") is None:
        raise ClusterUnavailable(f"`ip` (iproute2) not found: {IPROUTE_HINT}")
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"not root (uid {os.geteuid()}): {IPROUTE_HINT}")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process in namespace ``ns`` (epmd, servers, workers), then delete it."""
    for _ in range(20):
        pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    ip("netns", "del", ns, check=False)


def clean_stale() -> list[str]:
    """Remove namespaces and links of earlier runs whose process is gone; returns their names."""
    removed = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = _OWNED.match(name)
        if found and not _pid_alive(int(found.group(1))):
            _kill_namespace(name)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        found = _OWNED.match(name)
        if found and not _pid_alive(int(found.group(1))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    nets = []
    for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for token in ip(*args, check=False).stdout.split():
            with contextlib.suppress(ValueError):
                if "/" in token or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", token):
                    nets.append(ipaddress.ip_network(token, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def pick_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A random 10.a.b.0/24 that overlaps no address or route of this machine."""
    rng = rng or random.Random(secrets.randbits(32))
    used = _networks_in_use()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(16, 250)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise ClusterUnavailable("no free 10.x.y.0/24 subnet found")


@dataclass
class Host:
    """One namespace: its name, its address on the bridge and the host end of its cable."""

    name: str
    netns: str
    address: str
    veth: str

    def prefix(self) -> list[str]:
        """Prefix a command with this to run it on this host."""
        return ["ip", "netns", "exec", self.netns]


class ClusterNode(RabbitMQNode):
    """A RabbitMQ node on a host of the cluster: standard ports on its own address, long name."""

    def __init__(self, base_dir: Path, host: Host, cookie: str, net_ticktime: int) -> None:
        super().__init__(base_dir, amqp_port=5672, management_port=15672)
        self.host = host.address
        self.netns = host.netns
        self.cluster_host = host
        self.dist_port = 25672
        self.nodename = f"rabbit@{host.address}"
        self.cookie = cookie
        self.net_ticktime = net_ticktime

    def env(self) -> dict[str, str]:
        env = super().env()
        erl_ip = "{" + self.host.replace(".", ",") + "}"
        env.update(
            RABBITMQ_USE_LONGNAME="true",
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                f"-kernel inet_dist_use_interface {erl_ip} -kernel net_ticktime {self.net_ticktime}"
            ),
        )
        return env

    def _write_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cookie = self.base_dir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        super()._write_files()
        with (self.base_dir / "rabbitmq.conf").open("a") as conf:
            conf.write(
                "\n".join(
                    [
                        f"management.tcp.ip = {self.host}",
                        "loopback_users = none",  # guest from the other hosts: a private test network
                        "cluster_partition_handling = pause_minority",
                        "",
                    ]
                )
            )


class Cluster:
    """The namespaces, the bridge, the RabbitMQ cluster and PostgreSQL (see the module's doc)."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        rabbit_nodes: int = 3,
        worker_hosts: int = 2,
        net_ticktime: int = 10,
        postgres_options: dict[str, str] | None = None,
    ) -> None:
        check_can_build()
        # Under /tmp: as root PostgreSQL runs as user postgres, which must reach its directory.
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="backlane-cluster-", dir="/tmp"))
        self.base_dir.chmod(0o711)
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        if len(self.bridge) > 15:
            raise ClusterUnavailable(f"pid {os.getpid()} too long for an interface name")
        self.subnet = pick_subnet()
        hosts = [(f"r{i + 1}", 11 + i) for i in range(rabbit_nodes)]
        hosts += [(f"w{i + 1}", 21 + i) for i in range(worker_hosts)]
        hosts += [("db", 31)]
        base = int(self.subnet.network_address)
        self.gateway = str(ipaddress.IPv4Address(base + 1))
        self.hosts = {
            name: Host(name, f"{self.tag}-{name}", str(ipaddress.IPv4Address(base + last)), f"{self.tag}{name}")
            for name, last in hosts
        }
        cookie = secrets.token_hex(16).upper()
        self.nodes = [
            ClusterNode(self.base_dir / f"rabbit-{h}", self.hosts[h], cookie, net_ticktime)
            for h, _ in hosts
            if h.startswith("r")
        ]
        pg_options = {
            # A worker host cut off mid-transaction must not hold its row locks for ever.
            "idle_in_transaction_session_timeout": "15s",
            "tcp_keepalives_idle": "5",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3",
            "max_connections": "300",
            **(postgres_options or {}),
        }
        self.postgres = PostgresNode(
            self.base_dir / "postgres",
            port=5432,
            host=self.hosts["db"].address,
            netns=self.hosts["db"].netns,
            trusted_network=str(self.subnet),
            options=pg_options,
        )
        self._built = False
        self._closed = False

    # -- addresses ------------------------------------------------------------

    def amqp_urls(self, query: str = "heartbeat=5&socket_timeout=3&stack_timeout=6&connection_attempts=1") -> str:
        """Every node's AMQP URL, ';' between them (what ``BACKLANE_BROKER__URL`` gets)."""
        return ";".join(f"{node.amqp_url}?{query}" if query else node.amqp_url for node in self.nodes)

    def live_node(self, exclude: tuple[ClusterNode, ...] = ()) -> ClusterNode:
        """A running node, reachable from here (not cut off), that answers the management API."""
        import httpx

        for node in self.nodes:
            if node in exclude or not node.is_running() or self.is_cut(node.cluster_host.name):
                continue
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{node.management_url}/api/overview", auth=("guest", "guest"), timeout=3).is_success:
                    return node
        raise RuntimeError("no RabbitMQ node of the cluster answers")

    # -- building and tearing down ---------------------------------------------------

    def start(self) -> Cluster:
        atexit.register(self.close)
        clean_stale()
        self._build_network()
        errors: list[BaseException] = []

        def run(target: object) -> None:
            try:
                target()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n.start,)) for n in self.nodes]
        threads.append(threading.Thread(target=run, args=(self.postgres.start,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        self._join_cluster()
        return self

    def _build_network(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self._built = True
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            ip("netns", "add", host.netns)
            ip("-n", host.netns, "link", "set", "lo", "up")
            peer = f"{host.veth}p"
            ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", host.netns)
            ip("-n", host.netns, "link", "set", peer, "name", "eth0")
            ip("-n", host.netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("link", "set", host.veth, "master", self.bridge)
            ip("link", "set", host.veth, "up")
        # Another run may have picked the same subnet at the same moment: then give up loudly.
        mine = ipaddress.ip_network(f"{self.gateway}/{self.subnet.prefixlen}", strict=False)
        owners = [
            line.split()[1]
            for line in ip("-4", "-o", "addr", "show", check=False).stdout.splitlines()
            if f" {self.gateway}/" in line or str(mine.network_address)[:-1] in line.split()[3]
        ]
        if any(owner != self.bridge for owner in owners):
            raise ClusterUnavailable(f"subnet {self.subnet} is also used by {owners}; run again")

    def _join_cluster(self) -> None:
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")
        deadline = time.monotonic() + 60
        while True:
            status = json.loads(first.ctl("cluster_status", "--formatter", "json").stdout)
            running = set(status.get("running_nodes", []))
            if running >= {n.nodename for n in self.nodes}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not form: running {sorted(running)}")
            time.sleep(1)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()
        with contextlib.suppress(Exception):
            self.postgres.kill()
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                _kill_namespace(host.netns)
        if self._built:
            ip("link", "del", self.bridge, check=False)
        for host in self.hosts.values():
            ip("link", "del", host.veth, check=False)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- faults ---------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Pull the host's network cable: nothing reaches it, it reaches nothing (a partition)."""
        ip("link", "set", self.hosts[host].veth, "down")

    def heal(self, host: str) -> None:
        """Plug the host's cable back in."""
        ip("link", "set", self.hosts[host].veth, "up")

    def is_cut(self, host: str) -> bool:
        out = ip("-o", "link", "show", self.hosts[host].veth, check=False).stdout
        return "state DOWN" in out or ",UP" not in out

    def node(self, host: str) -> ClusterNode:
        return next(n for n in self.nodes if n.cluster_host.name == host)

    def cluster_status(self, via: ClusterNode | None = None) -> dict[str, object]:
        node = via or self.live_node()
        return dict(json.loads(node.ctl("cluster_status", "--formatter", "json").stdout))

    def queue_types(self, via: ClusterNode | None = None) -> dict[str, str]:
        """{queue: type} of every queue in the cluster, from ``rabbitmqctl list_queues``."""
        node = via or self.live_node()
        out = node.ctl("list_queues", "name", "type", "--formatter", "json").stdout
        return {q["name"]: q["type"] for q in json.loads(out)}
