"""A private RabbitMQ node for tests and the demo, and how to get the server installed.

Tests must exercise the real broker (publisher confirms, dead-letter queues,
broker restarts), but must not depend on, or disturb, a system RabbitMQ: the
node here runs from the Debian package's scripts with its own name, ports,
data directory, Erlang cookie and config, as whatever user we are (root
included), and goes away with the process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path

from devtools.infra.ports import free_port, is_listening
from devtools.infra.process import apt_install, die_with_parent, signal_group, stop_group, tail, wait_ports_free

RABBITMQ_SBIN = Path("/usr/lib/rabbitmq/bin")
"""Debian's real scripts; /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user."""

INSTALL_HINT = (
    "rabbitmq-server is not installed. Fix: as root run "
    "`apt-get update && apt-get install -y rabbitmq-server` (Debian/Ubuntu; "
    "`scripts/bootstrap` does this for you), or run a broker with `docker compose up rabbitmq` "
    "and set BACKLANE_BROKER__URL=amqp://guest:guest@127.0.0.1:5672/%2F "
    "(for the test suite: BACKLANE_TEST_AMQP_URL and BACKLANE_TEST_MANAGEMENT_URL=http://127.0.0.1:15672)."
)


class MissingRabbitMQ(RuntimeError):
    """rabbitmq-server is not on this machine; the message says how to get it."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{INSTALL_HINT} {detail}".strip())


class RabbitMQStartError(RuntimeError):
    """The node did not come up; the message carries the tail of its logs."""


def find_rabbitmq_server() -> Path | None:
    """The rabbitmq-server start script, preferring Debian's unwrapped one."""
    direct = RABBITMQ_SBIN / "rabbitmq-server"
    if direct.is_file() and os.access(direct, os.X_OK):
        return direct
    found = shutil.which("rabbitmq-server")
    return Path(found) if found else None


def install_rabbitmq_server(allow: bool) -> bool:
    """Install Debian's rabbitmq-server when missing and allowed; True if it is available after.

    Only on apt-based systems and only as root or with passwordless sudo: a
    password prompt would hang CI. The package's postinst tries to start a
    system service; whether that succeeds or is denied does not matter, the
    private node never uses it.
    """
    if find_rabbitmq_server() is not None:
        return True
    if not allow or not apt_install(["rabbitmq-server"]):
        return False
    return find_rabbitmq_server() is not None


_running: weakref.WeakSet[RabbitMQNode] = weakref.WeakSet()


@atexit.register
def _stop_running_nodes() -> None:
    """Stop nodes whose owner forgot to, so an interpreter exit leaves no broker behind."""
    for node in list(_running):
        node.stop(timeout=10)


class RabbitMQNode:
    """A private RabbitMQ node with its own ports and data, restartable on the same ones.

    ``stop()``/``start()`` keep the data directory, node name and ports, so
    durable queues and persistent messages survive a restart and clients can
    reconnect to the same URL: tests use that to prove reconnection.
    """

    restartable = True
    #: Address the node listens on and clients connect to.
    host = "127.0.0.1"
    #: A network namespace to run the node in (``ip netns exec``); None: this machine's own network.
    netns: str | None = None

    def __init__(self, base_dir: Path, amqp_port: int | None = None, management_port: int | None = None) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.amqp_port = amqp_port or free_port()
        self.management_port = management_port or free_port()
        self.dist_port = free_port()
        self.nodename = f"backlane-{self.amqp_port}-{secrets.token_hex(3)}@localhost"
        self.log_dir = self.base_dir / "log"
        self.stdout_log = self.log_dir / "stdout.log"
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    def exec_prefix(self) -> list[str]:
        """The command prefix that runs a program where the node runs (its network namespace)."""
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """Environment for rabbitmq-server and rabbitmqctl talking to this node.

        Inherited RABBITMQ_* variables are dropped and the system's
        rabbitmq-env.conf and rabbitmq.conf are replaced by our own files, so
        nothing from the machine's broker setup leaks in. HOME points at the
        base dir, where Erlang reads the cookie both server and CLI must share.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.base_dir),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.base_dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base_dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "rabbitmq-env.conf"),
            # Erlang distribution (rabbitmqctl) on loopback only, not on every interface.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_CRASH_DUMP=str(self.log_dir / "erl_crash.dump"),
        )
        return env

    def _write_files(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cookie = self.base_dir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)  # Erlang refuses a cookie file others can read.
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("")
        (self.base_dir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"management.tcp.port = {self.management_port}",
                    "management.tcp.ip = 127.0.0.1",
                    # Queue counts in the management API refresh every second, not five.
                    "collect_statistics_interval = 1000",
                    "log.console = false",
                    "log.file.level = info",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 60) -> None:
        """Start the node (again) and return once AMQP and the management API both answer."""
        if self.is_running():
            return
        server = find_rabbitmq_server()
        if server is None:
            raise MissingRabbitMQ()
        self._write_files()
        began = time.monotonic()
        busy = [] if self.netns else wait_ports_free([self.amqp_port, self.management_port, self.dist_port], 15)
        if busy:
            raise RabbitMQStartError(f"ports {busy} of node {self.nodename} are taken by another process")
        with self.stdout_log.open("ab") as out:
            out.write(f"\n==== start {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [*self.exec_prefix(), str(server)],
                env=self.env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        _running.add(self)
        deadline = began + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                self._fail(f"rabbitmq-server exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"rabbitmq-server not ready after {timeout:.0f} s")
            time.sleep(0.2)
        self.last_start_seconds = time.monotonic() - began

    def _fail(self, reason: str) -> None:
        """Kill the half-started node and raise with what its logs say."""
        self.kill()
        node_log = self.log_dir / f"{self.nodename}.log"
        raise RabbitMQStartError(
            f"{reason} (node {self.nodename}, amqp {self.amqp_port}, management {self.management_port}).\n"
            f"--- {self.stdout_log} ---\n{tail(self.stdout_log)}\n--- {node_log} ---\n{tail(node_log)}"
        )

    def _ready(self) -> bool:
        """True when a real AMQP connection opens and /api/overview answers as guest."""
        if not self.netns and not (is_listening(self.amqp_port) and is_listening(self.management_port)):
            return False  # (another namespace's sockets are not in this one's /proc/net)
        import httpx
        import pika
        import pika.exceptions

        pika_logger = logging.getLogger("pika")
        level = pika_logger.level
        pika_logger.setLevel(logging.CRITICAL)  # refused connections while booting are expected
        try:
            params = pika.URLParameters(self.amqp_url)
            params.connection_attempts = 1
            params.socket_timeout = 2
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        finally:
            pika_logger.setLevel(level)
        try:
            resp = httpx.get(f"{self.management_url}/api/overview", auth=("guest", "guest"), timeout=2)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def stop(self, timeout: float = 30) -> None:
        """Stop gracefully (SIGTERM: RabbitMQ flushes and closes), SIGKILL after ``timeout``.

        Leaves no Erlang process behind; epmd, shared by all nodes on the
        machine, may stay. Data and ports are kept for a later ``start()``.
        """
        if self._proc is not None:
            if self._proc.poll() is None:
                self._detach_stats_handler()
            stop_group(self._proc, signal.SIGTERM, timeout)
            self._proc = None
        _running.discard(self)

    def _detach_stats_handler(self) -> None:
        """Remove the management stats event handler before SIGTERM; saves 5 s per stop.

        On shutdown (3.10) that handler's terminate calls application:set_env
        while the application controller is busy stopping rabbit, and blocks
        until a 5 s call timeout. Removed while the node is still up, it
        terminates at once. Best effort: a plain SIGTERM still works without it.
        """
        expr = "gen_event:delete_handler(rabbit_event, rabbit_mgmt_db_handler, stop)."
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.ctl("eval", expr, check=False, timeout=10)

    def kill(self) -> None:
        """SIGKILL the node at once, as a crash would; ``start()`` recovers from the same data."""
        if self._proc is not None:
            signal_group(self._proc, signal.SIGKILL)
            stop_group(self._proc, signal.SIGKILL, 10)
            self._proc = None
        _running.discard(self)

    def restart(self, timeout: float = 60) -> None:
        """Graceful stop then start on the same ports and data."""
        self.stop()
        self.start(timeout=timeout)

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> args...`` against this node (same HOME, so same cookie)."""
        rabbitmqctl = RABBITMQ_SBIN / "rabbitmqctl"
        cmd = [*self.exec_prefix(), str(rabbitmqctl) if rabbitmqctl.exists() else "rabbitmqctl", "-n", self.nodename]
        cmd += args
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, check=check, timeout=timeout)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"RabbitMQNode({self.nodename}, amqp={self.amqp_port}, mgmt={self.management_port}, {state})"


class ExternalRabbitMQ:
    """A broker someone else runs (env override in tests): same URLs, cannot be restarted."""

    restartable = False

    def __init__(self, amqp_url: str, management_url: str) -> None:
        self.amqp_url = amqp_url
        self.management_url = management_url.rstrip("/")

    def is_running(self) -> bool:
        return True

    def _refuse(self, *_: object, **__: object) -> None:
        raise RuntimeError(
            "this test stops or restarts the broker, which an external node "
            "(BACKLANE_TEST_AMQP_URL) does not allow: unset it to use a private node"
        )

    start = stop = kill = restart = _refuse
