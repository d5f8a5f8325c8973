"""One type for "what went wrong, in one line, with its exit status", and each of its helpers once.

The CLI, the dashboard and a worker or clock refusing to start all say a
:class:`~backlane.errors.Problem`: no other class carries an exit status, nothing subclasses it,
the exit statuses and the broker URL's setting name are spelled in one module each, and the
helpers that make such lines (redacting a URL, a failure's first line, a pika error's cause)
are defined once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pika.exceptions
import pytest
from dramatiq.errors import ConnectionClosed

import backlane
from backlane.errors import EXIT_UNAVAILABLE, EXIT_USAGE, Problem, first_line, named_cause, redact_url
from backlane.problems import broker_cause, broker_problem, broker_refused, explain

PACKAGE_DIR = Path(backlane.__file__).resolve().parent


def _modules() -> list[ModuleType]:
    return [importlib.import_module(info.name) for info in pkgutil.walk_packages(backlane.__path__, "backlane.")]


def _defined(kind: type | None = None) -> list[tuple[str, object]]:
    """Every class (of ``kind``) and function backlane defines, as (qualified name, object)."""
    found: list[tuple[str, object]] = []
    for module in [backlane, *_modules()]:
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if kind is not None and not (isinstance(obj, type) and issubclass(obj, kind)):
                continue
            if isinstance(obj, type) or inspect.isfunction(obj):
                found.append((f"{module.__name__}.{obj.__qualname__}", obj))  # type: ignore[attr-defined]
    return found


def test_problem_is_the_one_type_with_an_exit_status() -> None:
    carriers = [
        name
        for name, cls in _defined(BaseException)
        if cls is not Problem and any("status" in vars(base) for base in cls.__mro__ if base is not Problem)  # type: ignore[attr-defined]
    ]
    assert not carriers, f"only backlane.errors.Problem carries an exit status: {carriers}"
    subclasses = [name for name, cls in _defined(Problem) if cls is not Problem]
    assert not subclasses, f"say it with a Problem (a function that makes one), not a subclass: {subclasses}"


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of ``tree``'s module, classes and functions."""
    owners = [n for n in ast.walk(tree) if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)]
    return {
        id(owner.body[0].value)
        for owner in owners
        if owner.body and isinstance(owner.body[0], ast.Expr) and isinstance(owner.body[0].value, ast.Constant)
    }


def test_exit_statuses_and_the_broker_url_setting_are_spelled_once() -> None:
    exits: list[str] = []
    broker_url: list[str] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(PACKAGE_DIR.parent))
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                exits += [f"{where}: {t.id}" for t in targets if isinstance(t, ast.Name) and t.id.startswith("EXIT_")]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                broker_url += [where] if "BACKLANE_BROKER__URL" in node.value else []
    assert sorted(exits) == sorted(
        f"backlane/errors.py: {name}" for name in ("EXIT_UNAVAILABLE", "EXIT_USAGE", "EXIT_CONFIG", "EXIT_INTERRUPTED")
    ), exits
    assert broker_url == ["backlane/problems.py"], f"name it with backlane.problems.BROKER_URL: {broker_url}"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"redact", ["backlane.errors.redact_url"]),
        (r"first_line", ["backlane.errors.first_line"]),
        (r"^_?(why|one_line)$|_cause$", ["backlane.errors.named_cause", "backlane.problems.broker_cause"]),
    ],
)
def test_each_line_helper_is_defined_once(pattern: str, expected: list[str]) -> None:
    names = sorted(name for name, obj in _defined() if inspect.isfunction(obj) and re.search(pattern, obj.__name__))
    assert names == expected


def test_urls_lose_their_passwords_whatever_they_are_for() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/backlane") == "postgresql://app:***@db:5432/backlane"
    assert redact_url("sqlite:///var/lib/backlane.db") == "sqlite:///var/lib/backlane.db"
    assert redact_url("amqp://a:x@h1/%2F;amqp://h2/%2F") == "amqp://a:***@h1/%2F;amqp://h2/%2F"
    assert redact_url("amqp://u:p@[::1") == "<unparsable URL>"


def test_a_failure_in_a_few_words() -> None:
    assert first_line(ValueError("one\ntwo")) == "one" and first_line(ValueError()) == ""
    assert first_line(ValueError("x" * 500), 300) == "x" * 300
    assert named_cause(ValueError("bad\nmore")) == "ValueError: bad"
    assert named_cause(ValueError()) == "ValueError"
    nested = ConnectionClosed(pika.exceptions.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused")))
    assert broker_cause(nested) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_rabbitmq_refusing_or_away_is_a_problem_with_its_status() -> None:
    url = "amqp://ops:hunter2@127.0.0.1:5672/%2F"
    refused = broker_problem(pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED - Login was refused"), url)
    assert refused is not None and refused.status == EXIT_USAGE
    assert refused.line == broker_refused(url, "ACCESS_REFUSED - Login was refused").line
    away = broker_problem(ConnectionClosed(pika.exceptions.AMQPConnectionError("Connection refused")), url)
    assert away is not None and away.status == EXIT_UNAVAILABLE
    assert "is unreachable" in away.line and "BACKLANE_BROKER__URL" in away.line
    for problem in (refused, away):
        assert "hunter2" not in problem.line and "ops:***@127.0.0.1" in problem.line
        assert explain(problem) is problem and "\n" not in problem.line
    assert broker_problem(ValueError("not about RabbitMQ"), url) is None
