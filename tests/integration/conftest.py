"""In-process integration fixtures: the real broker (private RabbitMQ node), a real
database (SQLite and PostgreSQL), the real HTTP simulator on loopback, and a
Dramatiq worker running in this process. Time is a FrozenClock the test moves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import httpx
import pytest

from backlane.core.clock import FrozenClock
from backlane.core.registry import REGISTRY
from backlane.core.runtime import Runtime, install
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.settings import Settings
from devtools.simulator import Simulator


@pytest.fixture(scope="session")
def app_broker(rabbitmq: Any) -> Any:
    """The application broker (actors registered), connected to the test node."""
    os.environ["BACKLANE_BROKER__URL"] = rabbitmq.amqp_url
    os.environ["BACKLANE_BROKER__MANAGEMENT_URL"] = rabbitmq.management_url
    os.environ["BACKLANE_WORKER__METRICS_PORT"] = "0"
    import scheduler

    return scheduler.broker


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@dataclass
class App:
    runtime: Runtime
    db: Database
    simulator: Simulator
    clock: FrozenClock
    broker: Any
    rabbitmq: Any

    def config(self, pipeline: str) -> Any:
        """A registered pipeline's settings section, as the runtime reads it."""
        return self.runtime.config(REGISTRY.get(pipeline).pipeline)

    def set_config(self, pipeline: str, config: Any) -> None:
        self.runtime.configs[pipeline] = config

    def configure(self, section: str, **values: Any) -> None:
        """Change settings of one section (a pipeline's or a process-wide one) for this test;
        the runtime reads them live."""
        if section not in type(self.runtime.settings).model_fields:
            self.set_config(section, self.config(section).model_copy(update=values))
            return
        current = getattr(self.runtime.settings, section)
        self.runtime.settings = self.runtime.settings.model_copy(update={section: current.model_copy(update=values)})

    def use_simulator(self, pipeline: str) -> None:
        """Point ``pipeline``'s external API (its section's ``base_url``) at this test's simulator."""
        self.configure(pipeline, base_url=self.simulator.url, timeout=5.0)

    def sim_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.simulator.url}/_admin/stats", timeout=5).json()

    def queue_counts(self, queue: str) -> tuple[int, int, int]:
        return self.broker.get_queue_message_counts(queue)


def fast_settings(simulator_url: str) -> Settings:
    """Test settings: short backoffs and polls so retries happen in milliseconds."""
    settings = Settings()
    return settings.model_copy(
        update={
            "retries": settings.retries.model_copy(update={"min_backoff_ms": 50, "max_backoff_ms": 500}),
        }
    )


@pytest.fixture
def app(app_broker: Any, rabbitmq: Any, database_url: str, simulator: Simulator) -> Iterator[App]:
    upgrade(database_url)
    db = Database(database_url)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    runtime = install(Runtime(settings=fast_settings(simulator.url), broker=app_broker, clock=clock, _database=db))
    test_app = App(runtime, db, simulator, clock, app_broker, rabbitmq)
    test_app.configure("orders", status_poll_seconds=0.1, created_recheck_seconds=0.1)
    test_app.use_simulator("orders")
    # Reconnect first if an earlier test restarted the broker under this connection.
    app_broker.with_reconnect(app_broker.flush_all, "purge the test queues")
    yield test_app
    app_broker.with_reconnect(app_broker.flush_all, "purge the test queues")
    db.dispose()


@pytest.fixture
def worker(app: App) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker consuming every queue, in this process."""
    worker = dramatiq.Worker(app.broker, worker_threads=8, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop(timeout=10_000)
    # A Worker hooks itself into the broker for queues declared later and never
    # unhooks: left there, a stopped worker would start consuming (and hoarding)
    # the queues of pipelines registered by later tests.
    app.broker.middleware[:] = [m for m in app.broker.middleware if getattr(m, "worker", None) is not worker]
