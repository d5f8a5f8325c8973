"""A private Prometheus server for tests: loopback only, its own free port, configuration and
data directory, gone with the process that started it.

The alert rules in ``monitoring/prometheus/`` are unit-tested by promtool; this server is for
the one test that proves them against the real thing: a real Prometheus scraping a real
worker's ``/metrics`` and evaluating the rules. It runs Debian's ``prometheus`` binary
(``scripts/bootstrap --with-prometheus`` installs it) in its own process group, asking the
kernel to stop it when its parent dies, like the private RabbitMQ and PostgreSQL nodes.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import yaml

from devtools.infra.ports import free_port
from devtools.infra.process import die_with_parent, stop_group, tail

INSTALL_HINT = (
    "the Prometheus server is not installed. Fix: as root run "
    "`apt-get update && apt-get install -y prometheus` (Debian/Ubuntu; "
    "`scripts/bootstrap --with-prometheus` does this for you)"
)


class PrometheusStartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


_running: weakref.WeakSet[PrometheusServer] = weakref.WeakSet()


@atexit.register
def _stop_running() -> None:
    for server in list(_running):
        server.stop()


class PrometheusServer:
    """``config``: the configuration as a mapping (``global``, ``rule_files``, ``scrape_configs``);
    written to ``base_dir`` with the data directory beside it."""

    def __init__(self, base_dir: Path, config: dict[str, Any]) -> None:
        self.base_dir = base_dir
        self.config = config
        self.port = free_port()
        self.log_path = base_dir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusStartError(INSTALL_HINT)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.base_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusStartError(
                    f"prometheus exited with status {self._proc.returncode}:\n{tail(self.log_path)}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusStartError(f"prometheus not ready after {timeout:.0f}s:\n{tail(self.log_path)}")

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s ``data``."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert: labels, annotations, state, value."""
        return list(self.api("alerts")["alerts"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def stop(self, timeout: float = 15) -> None:
        if self._proc is not None:
            stop_group(self._proc, signal.SIGTERM, timeout)
            self._proc = None
        _running.discard(self)
