"""compose.yaml, checked without Docker: spec-valid, wired to real settings and real entry points.

CI has no Docker engine, so nothing here starts a container. What would break a
``docker compose up`` silently is checked instead: a BACKLANE_* name that is not
a setting (pydantic-settings ignores it), a setting left pointing at 127.0.0.1,
a command that does not exist, guest credentials, a second clock, a healthcheck
probing the wrong port.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from pydantic import BaseModel, SecretStr

from backlane.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings, load_settings
from tests.unit.compose_file import (
    COMPOSE_FILE,
    REPO,
    MissingVariable,
    backlane_services,
    commands,
    environment,
    healthcheck_code,
    load_compose,
)

#: What `RABBITMQ_PASSWORD=... POSTGRES_PASSWORD=... DASHBOARD_PASSWORD=... docker compose up` is given.
HOST_ENV = {"RABBITMQ_PASSWORD": "rabbit-pw", "POSTGRES_PASSWORD": "pg-pw", "DASHBOARD_PASSWORD": "dash-pw"}
SCHEMA_FILE = REPO / "tests" / "data" / "compose_spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    # The schema declares 2019-09 (and uses legacy "id" keys, which 2019-09 ignores; refs are JSON pointers).
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "compose.yaml breaks the Compose Specification:\n" + "\n".join(errors)
    assert "version" not in compose, "the Compose Specification has no top-level version"
    # The validator does reject what compose would reject (so the check above is not vacuous).
    assert list(validator.iter_errors({"services": {"worker": {"depends_on": {"migrate": {"condition": "done"}}}}}))


#: Prints every registered pipeline's section as JSON: run in a child process, so this
#: unit test never loads the application (and its broker) into the test session.
_DUMP_SECTIONS = (
    "import json; from backlane.app import load_app; app = load_app();"
    "print(json.dumps({r.name: r.context().config.model_dump(mode='json') for r in app.registry}))"
)


def pipeline_sections(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each registered pipeline's settings section (a pipeline declares its own, read by its name)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_SECTIONS],
        env={**clean, **(env or {}), "BACKLANE_WORKER__METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _is_setting(name: str, sections: dict[str, dict[str, Any]]) -> bool:
    model: type[BaseModel] = Settings
    parts = name.removeprefix(ENV_PREFIX).lower().split(ENV_NESTED_DELIMITER)
    if parts[0] in sections and len(parts) > 1:  # a pipeline's own section
        value: Any = sections[parts[0]]
        for part in parts[1:]:
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        return True
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if depth < len(parts) - 1:
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
                return False
            model = field.annotation
    return True


def test_every_backlane_variable_is_a_setting() -> None:
    names = sorted(set(re.findall(r"\bBACKLANE_[A-Z0-9_]+", COMPOSE_FILE.read_text(encoding="utf-8"))))
    assert names
    sections = pipeline_sections()
    unknown = [name for name in names if not _is_setting(name, sections)]
    assert not unknown, f"not settings of backlane or of a pipeline (would be silently ignored): {unknown}"


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for key in type(value).model_fields:
            yield from _flatten(getattr(value, key), f"{prefix}{key}.")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value.get_secret_value() if isinstance(value, SecretStr) else value


def _settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in environment(service, HOST_ENV).items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_each_container_gets_settings_that_point_at_the_other_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    rabbit, postgres = environment(services["rabbitmq"], HOST_ENV), environment(services["postgres"], HOST_ENV)
    simulator_port = commands(services["simulator"])[0][-1]
    for name, service in backlane_services(compose).items():
        settings = _settings_of(service, monkeypatch)
        values = dict(_flatten(settings))
        values.update(_flatten(pipeline_sections(environment(service, HOST_ENV))))
        loopback = {k: v for k, v in values.items() if isinstance(v, str) and ("127.0.0.1" in v or "localhost" in v)}
        assert not loopback, f"{name}: loopback inside a container; set them in x-backlane-env: {loopback}"
        for key, value in values.items():
            if isinstance(value, str) and "://" in value:
                assert urlsplit(value).hostname in services, f"{name}: {key}={value} names no compose service"
            if isinstance(value, str) and (key.endswith(("_dir", ".root"))):
                assert value.startswith("/data/"), f"{name}: {key}={value} is not on the backlane-data volume"
        broker = urlsplit(settings.broker.url.get_secret_value())
        credentials = (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])
        assert (broker.username, broker.password, broker.port) == (*credentials, 5672)
        management = (settings.broker.management_user, settings.broker.management_password.get_secret_value())
        assert management == credentials
        database = urlsplit(settings.database.url.get_secret_value())
        assert (database.username, database.password, database.path) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )
        for key, value in values.items():
            if key.endswith("base_url") and value is not None:  # None: falls back to its section's
                assert value == f"http://simulator:{simulator_port}", f"{name}: {key}={value}"


def _check_program(argv: list[str]) -> None:
    """argv parses with the program's own parser and the modules it loads import."""
    program, args = argv[0], argv[1:]
    if program == "python":
        assert args[0] == "-m", argv
        module = importlib.import_module(f"{args[1]}.__main__")
        module._parser().parse_args(args[2:])
        return
    assert (Path(sys.executable).parent / program).exists(), f"{program}: no such console script"
    if program == "backlane":
        from backlane.cli import build_parser

        build_parser().parse_args(args)
        return
    if program == "dramatiq":
        from dramatiq.cli import make_argument_parser
    elif program == "periodiq":
        from periodiq import make_argument_parser
    else:
        raise AssertionError(f"unknown program {program!r} in compose.yaml")
    parsed = make_argument_parser().parse_args(args)
    # Imported in a fresh interpreter: these modules build the process-wide broker.
    check = (
        "import importlib, dramatiq, sys\n"
        f"broker = importlib.import_module({parsed.broker!r}).broker\n"
        f"for name in {parsed.modules!r}: importlib.import_module(name)\n"
        "assert isinstance(broker, dramatiq.Broker)\n"
        "assert any(a.options.get('periodic') for a in broker.actors.values()), 'no periodic actor'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr[-2000:]}"


def test_every_command_is_a_real_entry_point(compose: dict[str, Any]) -> None:
    programs = [argv for service in backlane_services(compose).values() for argv in commands(service)]
    assert {argv[0] for argv in programs} == {"backlane", "dramatiq", "periodiq", "python"}
    for argv in programs:
        try:
            _check_program(argv)
        except SystemExit as exc:  # argparse rejected the arguments
            raise AssertionError(f"{' '.join(argv)}: rejected by its argument parser") from exc


def test_rabbitmq_credentials_are_required_and_not_guest(compose: dict[str, Any]) -> None:
    rabbit = compose["services"]["rabbitmq"]
    assert "guest" not in json.dumps(rabbit["environment"])
    assert environment(rabbit, HOST_ENV)["RABBITMQ_DEFAULT_USER"] == "backlane"
    assert environment(rabbit, {**HOST_ENV, "RABBITMQ_USER": "ops"})["RABBITMQ_DEFAULT_USER"] == "ops"
    for service in compose["services"].values():
        if "environment" in service:
            with pytest.raises(MissingVariable):  # compose refuses to start without the passwords
                environment(service, {})


def test_one_clock_many_workers_migrate_first(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["scheduler"]["deploy"]["replicas"] == 1
    worker = services["worker"]
    assert "container_name" not in worker
    assert all(":" not in str(port) for port in worker.get("ports", [])), "a fixed host port stops --scale"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    for name in ("worker", "scheduler"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    long_running = [name for name, svc in services.items() if svc.get("restart") != "no"]
    assert sorted(long_running) == ["dashboard", "postgres", "rabbitmq", "scheduler", "simulator", "worker"]
    missing = [name for name in long_running if not services[name].get("healthcheck", {}).get("test")]
    assert not missing, f"long-running services without a healthcheck: {missing}"
    assert services["rabbitmq"]["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])


class _Health(BaseHTTPRequestHandler):
    """Stands in for the worker's endpoint: answers ``status`` and records what was asked."""

    status = 200
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_worker_healthcheck_asks_the_health_endpoint_on_the_metrics_port(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = compose["services"]["worker"]
    port = _settings_of(worker, monkeypatch).worker.metrics_port
    assert port and str(port) in [str(p) for p in worker["expose"]]
    handler = type("Handler", (_Health,), {"paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["BACKLANE_WORKER__METRICS_PORT"] = str(server.server_address[1])
    code = healthcheck_code(worker)
    try:
        assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0
        assert handler.paths == ["/health"]
        handler.status = 503
        assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as unused:  # nothing listening: unhealthy, not hanging
        unused.bind(("127.0.0.1", 0))
        env["BACKLANE_WORKER__METRICS_PORT"] = str(unused.getsockname()[1])
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode != 0


def test_simulator_healthcheck_asks_a_real_simulator_route(compose: dict[str, Any]) -> None:
    from devtools.simulator import Simulator

    service = compose["services"]["simulator"]
    url = urlsplit(healthcheck_code(service).split("'")[1])
    assert str(url.port) == commands(service)[0][-1]
    simulator = Simulator().start()
    try:
        with urllib.request.urlopen(simulator.url + url.path, timeout=5) as response:
            assert response.status == 200
    finally:
        simulator.stop()
