"""No page's example goes untested: every fenced block of the README and of docs/ is run or checked.

A block is covered when

* a test takes it with ``docs.block(page, language, *texts)`` (found here by reading every test's
  source, so a test that stops using a block stops covering it): the acceptance test runs the
  publishing examples on the real broker, the exports test runs its commands and SQL, the
  "Adding a pipeline" example is held to tests/integration/test_new_pipeline.py, and the tests
  below check the C#, the systemd unit and the command listings;
* or it is a shell block whose every command is one this file checks for real: a ``backlane``
  command parses (``backlane ... --help``, and every option it uses is in that help), a
  ``scripts/`` or ``benchmarks/`` file exists with the options and paths it is given, an
  ``export``ed or assigned variable is a setting or one the repository reads, a ``pip`` extra
  exists, a ``docker compose`` service exists and takes the variables given;
* or it is output, not an example, marked ```text.

Every ```python block also compiles, and every ```json block parses.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests import docs
from tests.docs import REPO, Block, commands

SHELL = ("sh", "bash", "console")
OUTPUT = "text"


# --- which test takes which block -----------------------------------------------------------


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "string"`` assignments, so ``docs.block(INTEROP, ...)`` resolves."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def block_references() -> list[tuple[str, tuple[str, ...]]]:
    """Every ``docs.block(...)`` call with literal arguments in the tests: (where, arguments)."""
    references = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = _constants(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "block" or not (
                isinstance(node.func.value, ast.Name) and node.func.value.id == "docs"
            ):
                continue
            args = []
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    args.append(arg.value)
                elif isinstance(arg, ast.Name) and arg.id in names:
                    args.append(names[arg.id])
                else:
                    break
            else:
                references.append((f"{path.relative_to(REPO)}:{node.lineno}", tuple(args)))
    return references


def referenced_blocks() -> set[Block]:
    taken = set()
    for _, (page, language, *texts) in block_references():
        taken.update(docs.matching(page, language, *texts))
    return taken


# --- the shell commands this file checks ------------------------------------------------------


def words(command: str) -> list[str]:
    """A command's words, its trailing comment and line continuations dropped."""
    return shlex.split(command.replace("\\\n", " "), comments=True)


def assignments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading ``NAME=value`` words (and ``export NAME=value``) apart from the command."""
    if argv[:1] == ["export"]:
        argv = argv[1:]
    values = {}
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        name, value = argv[0].split("=", 1)
        values[name] = value
        argv = argv[1:]
    return values, argv


@cache
def settings_variables() -> frozenset[str]:
    """Every BACKLANE_* variable there is, from the generated reference (a child process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "devtools.settings_reference", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return frozenset(row["variable"] for table in json.loads(result.stdout) for row in table["rows"])


@cache
def repository_text() -> str:
    """What the repository's own scripts, configuration, tests and devtools read (this file left out)."""
    paths = [
        *REPO.glob("scripts/*"),
        REPO / "compose.yaml",
        *REPO.glob("tests/**/*.py"),
        *REPO.glob("devtools/**/*.py"),
    ]
    return "\n".join(path.read_text() for path in paths if path.is_file() and path.name != Path(__file__).name)


def variable_problem(name: str) -> str | None:
    """None for a setting, or a variable the repository's scripts, tests or devtools read."""
    if name in settings_variables() or re.search(rf"\b{name}\b", repository_text()):
        return None
    return f"{name} is not a setting" if name.startswith("BACKLANE_") else f"nothing in the repository reads {name}"


def option_names(argv: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in argv if word.startswith("--")]


def backlane_help(argvs: list[list[str]]) -> list[tuple[int, str]]:
    """``backlane ARGS --help`` for each: (exit status, what it printed); the docs' own all in one go."""
    known = dict(_docs_help())
    missing = [argv for argv in argvs if tuple(argv) not in known]
    known.update(zip(map(tuple, missing), _run_help(missing), strict=True))
    return [known[tuple(argv)] for argv in argvs]


@cache
def _docs_help() -> tuple[tuple[tuple[str, ...], tuple[int, str]], ...]:
    argvs = sorted(
        {
            tuple(subcommand(argv))
            for block in docs.blocks()
            if block.language in SHELL
            for argv in map(words, commands(block.body))
            if argv[:1] == ["backlane"]
        }
    )
    return tuple(zip(argvs, _run_help([list(argv) for argv in argvs]), strict=True))


def _run_help(argvs: list[list[str]]) -> list[tuple[int, str]]:
    """``backlane ARGS --help`` for each, in one child process."""
    if not argvs:
        return []
    script = (
        "import contextlib, io, json, sys\n"
        "from backlane.cli import main\n"
        "out = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    text = io.StringIO()\n"
        "    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):\n"
        "        try:\n"
        "            code = main([*argv, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            code = exc.code\n"
        "    out.append((code, text.getvalue()))\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    argv = [sys.executable, "-c", script, json.dumps(argvs)]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [(code, text) for code, text in json.loads(result.stdout.strip().splitlines()[-1])]


def subcommand(argv: list[str]) -> list[str]:
    """The words of ``backlane ...`` that name its (sub)command: up to the first option or value."""
    names = []
    for word in argv[1:]:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        names.append(word)
        if names[0] not in ("exports", "dead-letters"):  # the commands with commands of their own
            break
    return names


def local_problems(argv: list[str]) -> list[str] | None:
    """What is wrong with a command that is not ``backlane``, or None when this file cannot check it."""
    variables, argv = assignments(argv)
    problems = [p for p in map(variable_problem, variables) if p]
    if not argv:
        return problems
    program, rest = argv[0], argv[1:]
    if program.startswith("scripts/"):
        script = REPO / program
        if not (script.is_file() and os.access(script, os.X_OK)):
            return [*problems, f"{program} is not an executable script"]
        paths = [word for word in rest if re.match(r"(tests|benchmarks|docs)/", word)]
        return problems + [f"{p} does not exist" for p in paths if not (REPO / p.split("::")[0]).exists()]
    if program == "python" and rest and rest[0].startswith("benchmarks/"):
        source = REPO / rest[0]
        if not source.is_file():
            return [*problems, f"{rest[0]} does not exist"]
        return problems + [f"{rest[0]} takes no {o}" for o in option_names(rest[1:]) if o not in source.read_text()]
    if program == "pip" and rest[:2] == ["install", "-e"] and len(rest) == 3:
        extra = re.fullmatch(r"\.\[([\w,-]+)\]", rest[2])
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        return problems + ([] if extra and set(extra.group(1).split(",")) <= set(extras) else [f"no extra {rest[2]}"])
    if argv[:3] == ["docker", "compose", "up"]:
        compose = yaml.safe_load((REPO / "compose.yaml").read_text())
        scaled = [w.split("=")[0] for w in rest[2:] if "=" in w and not w.startswith("-")]
        unknown = [f"compose.yaml has no service {s}" for s in scaled if s not in compose["services"]]
        required = set(re.findall(r"\$\{(\w+):\?", (REPO / "compose.yaml").read_text()))
        missing = [f"compose.yaml requires {name}, the command does not set it" for name in required - set(variables)]
        return problems + unknown + missing
    return None


def shell_problems(block: Block) -> list[str] | None:
    """Every problem of the block's commands, or None when one of them is not a kind this file checks."""
    problems, help_for = [], []
    for command in commands(block.body):
        argv = words(command)
        if not argv:
            continue
        if argv[0] == "backlane":
            help_for.append(argv)
            continue
        found = local_problems(argv)
        if found is None:
            return None
        problems += found
    for argv, (code, text) in zip(help_for, backlane_help([subcommand(a) for a in help_for]), strict=True):
        if code != 0:
            problems.append(f"`{' '.join(argv)}` does not parse: {text.strip().splitlines()[-1:]}")
        problems += [f"`{' '.join(argv)}`: no option {o} in its --help" for o in option_names(argv) if o not in text]
    return problems


# --- the tests ---------------------------------------------------------------------------------


def test_every_block_of_every_page_is_run_or_checked_by_a_test() -> None:
    taken = referenced_blocks()
    uncovered = []
    for block in docs.blocks():
        if block.language == OUTPUT or block in taken:
            continue
        if block.language in SHELL and shell_problems(block) is not None:
            continue  # its commands are checked, problems included, by the next test
        uncovered.append(str(block))
    assert not uncovered, (
        "fenced blocks no test runs or checks (take the block with docs.block(...) in the test that runs it, "
        f"or mark output as ```text): {uncovered}"
    )


def test_every_reference_to_a_block_finds_exactly_one() -> None:
    references = block_references()
    assert len(references) >= 10, references
    stale = [f"{where}: {args}" for where, args in references if len(docs.matching(*args)) != 1]
    assert not stale, f"docs.block(...) calls that match no block, or several: {stale}"


@pytest.mark.parametrize("block", [b for b in docs.blocks() if b.language in SHELL], ids=str)
def test_the_commands_of_a_shell_block_are_real(block: Block) -> None:
    problems = shell_problems(block)
    assert not problems, problems


def test_the_checks_catch_a_wrong_command() -> None:
    wrong = Block("x.md", "sh", "backlane status --no-such-option\nscripts/nope\nexport BACKLANE_NOPE=1\n", 1)
    assert sorted(shell_problems(wrong) or []) == [
        "BACKLANE_NOPE is not a setting",
        "`backlane status --no-such-option`: no option --no-such-option in its --help",
        "scripts/nope is not an executable script",
    ]
    assert shell_problems(Block("x.md", "sh", "curl http://example.invalid\n", 1)) is None, "not a kind checked here"


@pytest.mark.parametrize("block", [b for b in docs.blocks() if b.language == "python"], ids=str)
def test_every_python_block_compiles(block: Block) -> None:
    compile(block.body, str(block), "exec")


@pytest.mark.parametrize("block", [b for b in docs.blocks() if b.language == "json"], ids=str)
def test_every_json_block_parses(block: Block) -> None:
    json.loads(block.body)


def test_every_block_names_its_language() -> None:
    unnamed = [str(b) for b in docs.blocks() if not b.language]
    assert not unnamed, f"fenced blocks without a language (```text for output): {unnamed}"


def test_the_command_listings_are_commands_backlane_takes() -> None:
    listing = docs.block("docs/operating.md", "text", "backlane migrate", "backlane schemas")
    dead_letters = docs.block("docs/operating.md", "text", "backlane dead-letters list [--queue Q]")
    lines = [re.split(r"\s{2,}", line)[0] for line in (listing + dead_letters).splitlines() if line.strip()]
    argvs: list[list[str]] = []
    for line in lines:
        argv = line.split()
        assert argv[0] == "backlane", line
        alternatives = argv[2].split("|") if len(argv) > 2 and "|" in argv[2] else [None]
        for alternative in alternatives:
            named = [argv[1]] + ([alternative] if alternative else subcommand(argv)[1:])
            argvs.append([*named, *re.findall(r"--[\w-]+", line)])
    assert len(argvs) >= 14, argvs
    results = backlane_help([[w for w in argv if not w.startswith("--")] for argv in argvs])
    for argv, (code, text) in zip(argvs, results, strict=True):
        assert code == 0, (argv, text)
        assert all(option in text for option in argv if option.startswith("--")), (argv, text)
    listed = {argv[0] for argv in argvs}
    commands_of_cli = re.search(r"choose from ([^)]*)\)", backlane_help([["no-such-command"]])[0][1])
    assert commands_of_cli, "argparse names the commands it has"
    assert set(re.findall(r"'([\w-]+)'", commands_of_cli.group(1))) == listed, "the listing names every command"


def test_the_csharp_contract_is_the_order_created_contract() -> None:
    records = docs.block("docs/interop.md", "csharp", "public record OrderCreated(")
    publish = docs.block("docs/interop.md", "csharp", "publishEndpoint.Publish(")
    schema = json.loads((REPO / "contracts/schemas/OrderCreatedByRequest.schema.json").read_text())
    declared = dict(re.findall(r"public record (\w+)\(([^)]*)\)", records))
    camel = {
        name: [p.split()[1][0].lower() + p.split()[1][1:] for p in params.split(",")]
        for name, params in declared.items()
    }
    assert set(camel["OrderCreated"]) == {"requestId", "customer", "items"}
    assert "namespace SharedContracts;" in records, "MassTransit's message type is urn:message:SharedContracts:..."
    properties = {p.lower() for p in schema["properties"]} | {
        p.lower() for definition in schema.get("$defs", {}).values() for p in definition.get("properties", {})
    }
    assert {p.lower().replace("_", "") for p in camel["OrderCreated"] + camel["OrderItem"]} <= {
        p.replace("_", "") for p in properties
    }, (camel, properties)
    for call in re.findall(r"new (\w+)\(", publish):
        assert call in declared, f"the publish example builds {call}, which the records do not declare"


def test_the_systemd_unit_runs_the_worker_with_options_dramatiq_takes() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(docs.block("docs/operating.md", "ini", "[Service]", "ExecStart="))
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/.venv/bin/dramatiq") and argv[1:3] == ["actors", "scheduler"], argv
    help_text = subprocess.run(
        [sys.executable, "-m", "dramatiq", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert all(option in help_text for option in option_names(argv)), (argv, help_text)
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > 600, "longer than the time limit"
    assert service["Restart"] == "always"
    assert service["KillMode"] == "mixed", (
        "SIGTERM to the dramatiq parent only (it forwards it); SIGKILL to all at the end"
    )
    assert service["RestartPreventExitStatus"] == "78", "a bad setting stops with 78: no restart loop"
