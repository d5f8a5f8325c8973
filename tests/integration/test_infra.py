"""Smoke tests of the test infrastructure itself: private RabbitMQ and PostgreSQL nodes.

Every other integration test trusts these servers (and the broker restart
that fault tests rely on), so they are proven here first, on their own.
"""

from __future__ import annotations

import httpx
import pika
import sqlalchemy as sa

from devtools.infra.postgres import MissingPostgres
from devtools.infra.process import live_group_members
from devtools.infra.rabbitmq import ExternalRabbitMQ, MissingRabbitMQ, RabbitMQNode


def _channel(url: str) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _publish(url: str, queue: str, *bodies: bytes) -> None:
    """Persistent, confirmed publishes to a durable queue: what must survive a broker restart."""
    connection, channel = _channel(url)
    channel.queue_declare(queue, durable=True)
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def _get(url: str, queue: str) -> bytes | None:
    connection, channel = _channel(url)
    _method, _props, body = channel.basic_get(queue, auto_ack=True)
    connection.close()
    return body


def test_missing_server_messages_name_the_fix() -> None:
    assert "apt-get install -y rabbitmq-server" in str(MissingRabbitMQ())
    assert "docker compose up rabbitmq" in str(MissingRabbitMQ())
    assert "BACKLANE_BROKER__URL" in str(MissingRabbitMQ())
    assert "apt-get install -y postgresql" in str(MissingPostgres())


def test_broker_serves_amqp_and_management_api(rabbitmq: RabbitMQNode | ExternalRabbitMQ, amqp_url: str) -> None:
    _publish(amqp_url, "infra.smoke", b"hello")
    auth = ("guest", "guest")
    overview = httpx.get(f"{rabbitmq.management_url}/api/overview", auth=auth, timeout=10)
    assert overview.status_code == 200
    queue = httpx.get(f"{rabbitmq.management_url}/api/queues/%2F/infra.smoke", auth=auth, timeout=10)
    assert queue.status_code == 200
    assert queue.json()["durable"] is True
    assert _get(amqp_url, "infra.smoke") == b"hello"


def test_persistent_messages_survive_restart_and_crash(rabbitmq: RabbitMQNode | ExternalRabbitMQ) -> None:
    url = rabbitmq.amqp_url
    _publish(url, "infra.restart", b"one", b"two")

    old_pid = rabbitmq.pid if isinstance(rabbitmq, RabbitMQNode) else None
    rabbitmq.restart()  # graceful stop + start, same ports and data
    assert old_pid is not None and live_group_members(old_pid) == [], "stop() left Erlang processes behind"
    assert rabbitmq.amqp_url == url
    assert _get(url, "infra.restart") == b"one"

    rabbitmq.kill()  # SIGKILL: confirmed persistent messages are on disk already...
    rabbitmq.start()
    left = []
    while (body := _get(url, "infra.restart")) is not None:
        left.append(body)
    # ...but the ack of "one" may not be, so it can come back: at-least-once, as designed for.
    assert b"two" in left
    assert set(left) <= {b"one", b"two"}


def test_postgres_fresh_database(fresh_postgres_url: str) -> None:
    engine = sa.create_engine(fresh_postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("select current_database()")).scalar() == fresh_postgres_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()


def test_database_url_is_fresh_on_each_backend(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table probe (name text not null)"))
            conn.execute(sa.text("insert into probe (name) values ('x')"))
            assert conn.execute(sa.text("select count(*) from probe")).scalar() == 1
    finally:
        engine.dispose()
