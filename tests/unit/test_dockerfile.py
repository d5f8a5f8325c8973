"""The Dockerfile, checked without Docker: what `backlane migrate` and the workers need is in the image.

The trap it guards: ``backlane/db/migrate.py`` finds ``migrations/`` next to the
package, so a plain ``pip install .`` into site-packages builds an image whose
``backlane migrate`` cannot find its migrations. The image installs the source
tree in place (editable) at /app, with migrations/ beside it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

from backlane.db import migrate
from tests.unit.compose_file import REPO, commands, load_compose

#: What the processes in the image import or read at run time.
NEEDED = ("pyproject.toml", "README.md", "backlane", "actors", "scheduler", "contracts", "migrations")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(args.split())))
    return result


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins, ``!`` re-includes, a pattern matching a
    parent directory excludes what is inside, ``**/`` matches at any depth."""
    parts = path.split("/")
    ignored = False
    for raw in patterns:
        negate, pattern = raw.startswith("!"), raw.lstrip("!").strip("/")
        anywhere = pattern.startswith("**/")
        pattern = pattern.removeprefix("**/")
        starts = range(len(parts)) if anywhere else range(1)
        if any(
            fnmatch.fnmatchcase("/".join(parts[start:end]), pattern)
            for start in starts
            for end in range(start + 1, len(parts) + 1)
        ):
            ignored = not negate
    return ignored


def test_the_image_is_python_311_slim_with_the_source_at_app() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in steps
    copies = [shlex.split(args) for keyword, args in steps if keyword == "COPY"]
    assert any(parts[:-1] == ["."] and parts[-1] in ("/app", ".", "./", "/app/") for parts in copies), copies


def test_dockerignore_keeps_what_the_processes_need() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    needed = [
        path.relative_to(REPO).as_posix()
        for name in NEEDED
        for path in ([REPO / name] if (REPO / name).is_file() else (REPO / name).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert any(path.startswith("migrations/versions/") for path in needed)
    left_out = [path for path in needed if _ignored(path, patterns)]
    assert not left_out, f".dockerignore leaves these out of the image: {left_out}"
    assert _ignored("backlane/__pycache__/cli.cpython-311.pyc", patterns)
    assert _ignored(".git/HEAD", patterns)


def test_the_package_is_installed_in_place_so_migrations_are_found() -> None:
    installs = [args for keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0])
    target = ".[postgres,dashboard]"  # PostgreSQL's driver and the dashboard (the compose service)
    assert target in words and words[words.index(target) - 1] in ("-e", "--editable"), words
    # The lookup is relative to the source tree (here REPO, in the image /app, kept there by the editable install).
    assert Path(migrate.__file__).resolve().parents[2] == REPO
    assert migrate.MIGRATIONS_DIR == REPO / "migrations"
    assert (REPO / "migrations" / "env.py").is_file()


def test_it_runs_as_a_non_root_user_and_bakes_in_no_secrets() -> None:
    steps = instructions()
    users = [index for index, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, "no USER: the processes would run as root"
    last_user = steps[users[-1]][1]
    assert last_user.split(":")[0] not in ("root", "0"), last_user
    assert all(keyword != "RUN" for keyword, _ in steps[users[-1] :]), "USER must come after every RUN"
    for keyword, args in steps:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|BACKLANE_", args, re.IGNORECASE), args
        assert not re.search(r"://[^/\s:@]+:[^@\s]+@", args), f"credentials in a URL: {keyword} {args}"
    assert not any(keyword == "COPY" and ".env" in args for keyword, args in steps)


def test_the_default_command_is_the_worker() -> None:
    cmd = json.loads([args for keyword, args in instructions() if keyword == "CMD"][-1])
    assert cmd == commands(load_compose()["services"]["worker"])[0]
