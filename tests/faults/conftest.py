"""Fixtures of the fault suite: its own RabbitMQ node and PostgreSQL server, which scenarios kill,
stop and restart, so they are never the session's shared ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.infra.postgres import MissingPostgres, find_pg_bin
from devtools.infra.rabbitmq import MissingRabbitMQ, find_rabbitmq_server
from tests.faults.harness import Infra


@pytest.fixture(scope="session")
def fault_infra() -> Iterator[Infra]:
    if find_rabbitmq_server() is None:
        pytest.fail(str(MissingRabbitMQ()), pytrace=False)
    if find_pg_bin() is None:
        pytest.fail(str(MissingPostgres()), pytrace=False)
    infra = Infra().start()
    try:
        yield infra
    finally:
        infra.close()
