"""A libpq multi-host URL (PostgreSQL failover) reaches psycopg with every host, in any of its forms."""

from __future__ import annotations

import shlex

import pytest
from pydantic import SecretStr
from sqlalchemy import event

from backlane.db.engine import PG_TCP_ARGS, create_db_engine
from backlane.errors import redact_url
from backlane.settings import validate_database_url
from tests import docs

FORMS = [
    "postgresql://u:pw@/db?host=10.9.0.2:5432,10.9.0.3:5433&target_session_attrs=read-write",
    "postgresql://u:pw@/db?host=10.9.0.2:5432&host=10.9.0.3:5433&target_session_attrs=read-write",
    "postgresql://u:pw@10.9.0.2:5432,10.9.0.3:5433/db?target_session_attrs=read-write",
    "postgresql+psycopg://u:pw@/db?host=10.9.0.2,10.9.0.3&port=5432,5433&target_session_attrs=read-write",
]


@pytest.mark.parametrize("url", FORMS)
def test_every_host_and_target_session_attrs_reach_psycopg(url: str) -> None:
    validate_database_url(SecretStr(url))
    engine = create_db_engine(url, connect_timeout=3)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert engine.dialect.driver == "psycopg"
    assert (kwargs["host"], str(kwargs["port"])) == ("10.9.0.2,10.9.0.3", "5432,5433")
    assert kwargs["target_session_attrs"] == "read-write"
    assert (kwargs["dbname"], kwargs["user"], kwargs["password"]) == ("db", "u", "pw")
    shown = redact_url(url)
    assert "pw" not in shown and "10.9.0.3" in shown


class _Captured(Exception):
    pass


def _connect_params(url: str, connect_timeout: float) -> dict[str, object]:
    """The keyword arguments the engine would hand psycopg.connect (captured, never connected)."""
    engine = create_db_engine(url, connect_timeout=connect_timeout)
    seen: dict[str, object] = {}

    @event.listens_for(engine, "do_connect")
    def _capture(_dialect: object, _record: object, _cargs: object, cparams: dict[str, object]) -> None:
        seen.update(cparams)
        raise _Captured

    with pytest.raises(_Captured):
        engine.connect()
    return seen


def test_connections_carry_tcp_keepalives_and_a_user_timeout_unless_the_url_sets_them() -> None:
    params = _connect_params("postgresql://u@h/db", 4)
    assert {k: params[k] for k in PG_TCP_ARGS} == PG_TCP_ARGS
    assert params["connect_timeout"] == 4
    own = _connect_params("postgresql://u@h/db?keepalives_idle=60&connect_timeout=9", 4)
    assert own["keepalives_idle"] == "60" and own["connect_timeout"] == "9"
    assert own["tcp_user_timeout"] == PG_TCP_ARGS["tcp_user_timeout"]


def test_the_failover_docs_url_is_one_backlane_takes_with_every_host() -> None:
    command = docs.block("docs/scaling.md", "sh", "target_session_attrs=read-write")
    url = shlex.split(command)[1].split("=", 1)[1]
    engine = create_db_engine(url, connect_timeout=3)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert (kwargs["host"], kwargs["port"]) == ("10.0.0.31,10.0.0.32", "5432,5432")
    assert kwargs["target_session_attrs"] == "read-write"


def test_the_synchronous_commit_the_docs_ask_for_is_what_the_synchronous_failover_run_uses() -> None:
    conf = docs.block("docs/scaling.md", "ini", "synchronous_standby_names")
    settings = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition("=") for line in conf.splitlines()) if _
    )
    assert settings["synchronous_commit"] == "on"
    assert settings["synchronous_standby_names"].startswith("'ANY 1 (")
