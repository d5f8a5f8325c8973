"""A private PostgreSQL server for the test suite, on a free port with throwaway data.

The claim queries (``FOR UPDATE SKIP LOCKED``) and cross-process breaker
state only prove themselves on a real PostgreSQL, so tests start one from
the Debian binaries instead of mocking it. Durability is switched off (the
data dies with the test run) to keep it fast.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

from devtools.infra.ports import free_port
from devtools.infra.process import die_with_parent, stop_group, tail

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class MissingPostgres(RuntimeError):
    """The PostgreSQL server binaries are not on this machine; the message says how to get them."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin. "
            "Fix: as root run `apt-get update && apt-get install -y postgresql` (`scripts/bootstrap "
            "--with-postgres` does this for you), or point the tests at a server with "
            f"BACKLANE_TEST_POSTGRES_URL=postgresql+psycopg://user:password@host:5432/postgres. {detail}".strip()
        )


class PostgresStartError(RuntimeError):
    """initdb or the server failed; the message carries the tail of its log."""


def find_pg_bin() -> Path | None:
    """Highest-versioned /usr/lib/postgresql/<v>/bin holding initdb, else initdb's dir on PATH."""
    candidates = []
    for bin_dir in PG_ROOT.glob("*/bin"):
        with contextlib.suppress(ValueError):
            if (bin_dir / "initdb").is_file():
                candidates.append((float(bin_dir.parent.name), bin_dir))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


_running: weakref.WeakSet[PostgresNode] = weakref.WeakSet()


@atexit.register
def _stop_running_nodes() -> None:
    """Stop servers whose owner forgot to, so an interpreter exit leaves none behind."""
    for node in list(_running):
        node.stop(timeout=10)


class PostgresNode:
    """A private PostgreSQL server in ``base_dir`` listening on 127.0.0.1:``port``.

    PostgreSQL refuses to run as root, so as root the server runs as the
    ``postgres`` user (the Debian package creates it); ``base_dir`` is handed
    to that user, and every directory above it must let it through: use a
    directory under /tmp, not under /root or pytest's 0700 tmp_path.
    """

    restartable = True

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        trusted_network: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        #: Address the server listens on; in a network namespace (``ip netns exec``) when ``netns`` is set.
        self.host = host
        self.netns = netns
        #: A network (CIDR) whose clients may log in without a password, besides loopback.
        self.trusted_network = trusted_network
        #: Extra server settings (``-c key=value``).
        self.options = options or {}
        self.port = port or free_port()
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "postgres.log"
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this server."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{dbname}"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _bin(self, name: str) -> str:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise MissingPostgres()
        return str(bin_dir / name)

    def _server_user(self) -> dict[str, Any]:
        """Popen arguments that drop to the postgres user when we are root (it refuses root)."""
        if os.geteuid() != 0:
            return {}
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise MissingPostgres(f"(running as root and there is no '{SERVER_USER}' user)") from None
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        """Our environment minus PG* variables (they would redirect initdb and psql)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=str(self.base_dir), LC_ALL="C")
        return env

    def _prepare_dirs(self) -> None:
        """Create base_dir owned by the server user and check that user can reach it."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam(SERVER_USER)
        for path in (self.base_dir, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o700)
        groups = {g.gr_gid for g in grp.getgrall() if SERVER_USER in g.gr_mem} | {user.pw_gid}
        for parent in self.base_dir.parents:
            st = parent.stat()
            allowed = (
                st.st_mode & 0o001
                or (st.st_uid == user.pw_uid and st.st_mode & 0o100)
                or (st.st_gid in groups and st.st_mode & 0o010)
            )
            if not allowed:
                raise PostgresStartError(
                    f"{self.base_dir} is not reachable by user {SERVER_USER}: {parent} has mode "
                    f"{st.st_mode & 0o777:o}. Use a directory under /tmp (e.g. tempfile.mkdtemp())."
                )

    def _run(self, cmd: list[str]) -> None:
        """Run a one-shot server tool (initdb) as the server user, output into the log."""
        with self.log_file.open("ab") as out:
            result = subprocess.run(
                cmd,
                env=self._env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                **self._server_user(),
            )
        if result.returncode != 0:
            raise PostgresStartError(f"{cmd[0]} failed ({result.returncode}):\n{tail(self.log_file)}")

    def start(self, timeout: float = 60) -> None:
        """initdb on first use, then run the server and return once it accepts connections."""
        if self.is_running():
            return
        began = time.monotonic()
        postgres = self._bin("postgres")
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = [self._bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres"]
            self._run([*initdb, "-E", "UTF8", "--no-locale", "--no-sync"])
            if self.trusted_network:
                with (self.data_dir / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {self.trusted_network} trust\n")
        options = {
            "listen_addresses": self.host,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self.options,
        }
        prefix: list[str] = []
        user_args = self._server_user()
        if self.netns:  # ip netns exec needs root: drop to the server user after it, with setpriv
            prefix = ["ip", "netns", "exec", self.netns]
            if user_args:
                prefix += ["setpriv", f"--reuid={user_args['user']}", f"--regid={user_args['group']}", "--clear-groups"]
            user_args = {}
        cmd = [*prefix, postgres, "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.socket_dir)]
        for key, value in options.items():
            cmd += ["-c", f"{key}={value}"]
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                env=self._env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT),  # SIGINT = fast shutdown
                **user_args,
            )
        _running.add(self)
        ready = [self._bin("pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", "postgres"]
        while subprocess.run(ready, env=self._env(), check=False).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > began + timeout:
                reason = f"exited with {self._proc.returncode}" if self._proc.poll() is not None else "timed out"
                self.kill()
                raise PostgresStartError(f"postgres on port {self.port} {reason}:\n{tail(self.log_file)}")
            time.sleep(0.1)
        self.last_start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: sessions are ended), SIGKILL after ``timeout``; data is kept."""
        if self._proc is not None:
            stop_group(self._proc, signal.SIGINT, timeout)
            self._proc = None
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would."""
        if self._proc is not None:
            stop_group(self._proc, signal.SIGKILL, 10)
            self._proc = None
        _running.discard(self)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one SQL command with psql and return its unaligned output."""
        cmd = [self._bin("psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-U", "postgres"]
        cmd += ["-p", str(self.port), "-d", dbname, "-c", sql]
        result = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {sql!r}: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        self.psql(f'CREATE DATABASE "{_check_name(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending any session still connected to it."""
        self.psql(f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"PostgresNode(port={self.port}, {self.base_dir}, {state})"


def _check_name(name: str) -> str:
    """Database names go into SQL unquoted by parameters: allow plain identifiers only."""
    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


class ExternalPostgres:
    """A server someone else runs (``BACKLANE_TEST_POSTGRES_URL``): create and drop databases on it."""

    restartable = False

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self._url = make_url(url)
        if self._url.drivername == "postgresql":
            self._url = self._url.set(drivername="postgresql+psycopg")

    def url(self, dbname: str = "postgres") -> str:
        return self._url.set(database=dbname).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        import psycopg

        conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str) -> str:
        self._execute(f'CREATE DATABASE "{_check_name(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')
