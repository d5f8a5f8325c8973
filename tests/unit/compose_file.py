"""Reading compose.yaml the way ``docker compose`` does, for tests that cannot run Docker.

There is no Docker engine in CI, so ``docker compose config`` is not available:
the file is loaded with PyYAML (merge keys included) and ``${...}`` is
interpolated here with the same rules, so tests see what a container would.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
#: The image every backlane service runs (built from the Dockerfile).
BACKLANE_IMAGE = "backlane:local"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset: compose refuses to start."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's rules: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``${VAR:+alt}``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env if op is None or not op.startswith(":") else bool(env.get(name))
        if op in ("-", ":-"):
            return env[name] if present else arg
        if op in ("?", ":?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in ("+", ":+"):
            return arg if present else ""
        return env.get(name, "")

    return _VARIABLE.sub(replace, value)


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as the container sees it (list or mapping form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: interpolate(str(value), env) for key, value in raw.items() if value is not None}


def commands(service: Mapping[str, Any]) -> list[list[str]]:
    """The argv of each program a service runs; ``sh -c "a && b"`` gives two."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def healthcheck_code(service: Mapping[str, Any]) -> str:
    """The Python source of a ``["CMD", "python", "-c", code]`` healthcheck."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"expected a python -c healthcheck, got {test}"
    return str(test[3])


def backlane_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == BACKLANE_IMAGE}
