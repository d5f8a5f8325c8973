"""Session fixtures for the real infrastructure: a private RabbitMQ node and PostgreSQL server.

Tests run against the real broker and databases (see DESIGN.md), so a
missing server is a failure that names the fix, never a skip: a skipped
suite looks green while proving nothing. Servers start only when a test asks
for them, once per session. Set BACKLANE_TEST_AMQP_URL with
BACKLANE_TEST_MANAGEMENT_URL, or BACKLANE_TEST_POSTGRES_URL, to use servers
you run yourself instead (those cannot be restarted by fault tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.infra.ports import free_port
from devtools.infra.postgres import ExternalPostgres, MissingPostgres, PostgresNode, find_pg_bin
from devtools.infra.rabbitmq import ExternalRabbitMQ, MissingRabbitMQ, RabbitMQNode, find_rabbitmq_server
from devtools.infra.s3 import MissingS3Server, S3Server, S3StartError, S3Target, test_target

#: The session node's ports, chosen before any test module is imported. Importing a pipeline's
#: models (``actors/<name>/models.py``) imports ``actors``, which builds the application's broker
#: from the environment once per process: the environment must already name the node the session
#: starts, or every test after it would wait for a RabbitMQ on the default port.
SESSION_AMQP_PORT, SESSION_MANAGEMENT_PORT = free_port(), free_port()
SESSION_AMQP_URL = os.environ.get("BACKLANE_TEST_AMQP_URL") or f"amqp://guest:guest@127.0.0.1:{SESSION_AMQP_PORT}/%2F"
SESSION_MANAGEMENT_URL = os.environ.get("BACKLANE_TEST_MANAGEMENT_URL") or f"http://127.0.0.1:{SESSION_MANAGEMENT_PORT}"
os.environ["BACKLANE_BROKER__URL"] = SESSION_AMQP_URL
os.environ["BACKLANE_BROKER__MANAGEMENT_URL"] = SESSION_MANAGEMENT_URL
os.environ["BACKLANE_WORKER__METRICS_PORT"] = "0"  # the application's own endpoint: tests start theirs


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQNode | ExternalRabbitMQ]:
    """A running broker for the whole session: a private node, or the one named by env vars.

    Tests may ``stop()``/``start()``/``kill()`` a private node to prove
    reconnection; it comes back on the same URLs with the same data.
    """
    amqp_url = os.environ.get("BACKLANE_TEST_AMQP_URL")
    management_url = os.environ.get("BACKLANE_TEST_MANAGEMENT_URL")
    if amqp_url or management_url:
        if not (amqp_url and management_url):
            pytest.fail("set both BACKLANE_TEST_AMQP_URL and BACKLANE_TEST_MANAGEMENT_URL, or neither", pytrace=False)
        yield ExternalRabbitMQ(amqp_url, management_url)
        return
    if find_rabbitmq_server() is None:
        pytest.fail(str(MissingRabbitMQ()), pytrace=False)
    node = RabbitMQNode(tmp_path_factory.mktemp("rabbitmq"), SESSION_AMQP_PORT, SESSION_MANAGEMENT_PORT)
    assert (node.amqp_url, node.management_url) == (SESSION_AMQP_URL, SESSION_MANAGEMENT_URL), "see SESSION_AMQP_URL"
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def amqp_url(rabbitmq: RabbitMQNode | ExternalRabbitMQ) -> str:
    """The session broker's AMQP URL, started again if an earlier test left it stopped."""
    if not rabbitmq.is_running():
        rabbitmq.start()
    return rabbitmq.amqp_url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresNode | ExternalPostgres]:
    """A PostgreSQL server for the session: private (under /tmp), or BACKLANE_TEST_POSTGRES_URL's.

    The private server's directory is made with mkdtemp in /tmp rather than
    pytest's tmp_path: as root the server runs as user postgres, which cannot
    enter pytest's 0700 base directory.
    """
    url = os.environ.get("BACKLANE_TEST_POSTGRES_URL")
    if url:
        yield ExternalPostgres(url)
        return
    if find_pg_bin() is None:
        pytest.fail(str(MissingPostgres()), pytrace=False)
    base_dir = Path(tempfile.mkdtemp(prefix="backlane-pg-", dir="/tmp"))
    node = PostgresNode(base_dir)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def fresh_postgres_url(postgres: PostgresNode | ExternalPostgres) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on the session server; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(name)
    yield url
    with contextlib.suppress(Exception):  # a test that broke the server must not hide its own failure
        postgres.drop_database(name)


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a new SQLite file in the test's own tmp dir."""
    return f"sqlite:///{tmp_path}/backlane.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once per backend; PostgreSQL starts only when this reaches it."""
    fixture = "fresh_sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    """An S3-speaking server for the session: a private moto server on loopback with users, keys and
    a fault knob (devtools/infra/s3.py), or the MinIO/S3 named by BACKLANE_TEST_S3_URL."""
    try:
        target = test_target(tmp_path_factory.mktemp("s3"))
    except (MissingS3Server, S3StartError) as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield target
    finally:
        if isinstance(target, S3Server):
            target.stop()


@pytest.fixture
def s3_bucket(s3: S3Target) -> str:
    """A new, empty bucket on the session's S3 server."""
    return s3.new_bucket()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave ``by_hand`` tests (runs of minutes that a script runs whole) out of the default run,
    as deselected, which pytest's summary counts; BACKLANE_TEST_BY_HAND=1 keeps them."""
    if os.environ.get("BACKLANE_TEST_BY_HAND") == "1":
        return
    by_hand = [item for item in items if item.get_closest_marker("by_hand")]
    if by_hand:
        config.hook.pytest_deselected(items=by_hand)
        items[:] = [item for item in items if not item.get_closest_marker("by_hand")]
