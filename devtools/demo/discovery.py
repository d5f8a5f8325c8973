"""From the registered pipelines to their demo parts, so adding a pipeline edits nothing here.

A registration's part is the module ``devtools.demo.parts.<name>`` named after the
pipeline itself, else after the package that declares it (``actors.staging`` for
``staging_acme`` and ``staging_globex``: one part for both). Registrations sharing a
part are handed to it together, in the registry's order. A pipeline with no part is
left out of the demo and said so, never an error.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from backlane.core.registry import Registered
from devtools.demo.errors import DemoError
from devtools.demo.part import DemoPart

PARTS_PACKAGE = "devtools.demo.parts"


@dataclass(frozen=True)
class Parts:
    """The demo parts to run, and the registered pipelines that have none (not seeded)."""

    parts: tuple[DemoPart, ...]
    without_part: tuple[str, ...]


def load_registered() -> list[Registered[Any]]:
    """The application's registered pipelines, loaded as the CLI loads them (``BACKLANE_APP``)."""
    from backlane.app import load_app

    return list(load_app().registry)


def candidates(registered: Registered[Any]) -> list[str]:
    """Part names to try for a registration: its own name, then the packages that declare it."""
    module = str(getattr(registered.pipeline.process, "__module__", None) or "").split(".")
    return [registered.name, *module[1:]]


def _exists(name: str) -> bool:
    return name.isidentifier() and importlib.util.find_spec(f"{PARTS_PACKAGE}.{name}") is not None


def part_name(registered: Registered[Any]) -> str | None:
    """The name of the registration's demo part, None when it has none."""
    return next((name for name in candidates(registered) if _exists(name)), None)


def build(name: str, registered: list[Registered[Any]]) -> DemoPart:
    module = importlib.import_module(f"{PARTS_PACKAGE}.{name}")
    part = getattr(module, "PART", None)
    if not (isinstance(part, type) and issubclass(part, DemoPart)):
        raise DemoError(f"{module.__name__} has no PART (a DemoPart subclass): see devtools/demo/part.py")
    return part(name, registered)


def find_parts(registered: Iterable[Registered[Any]]) -> Parts:
    """Every registration's demo part (one per part module), and the pipelines without one."""
    grouped: dict[str, list[Registered[Any]]] = {}
    without: list[str] = []
    for reg in registered:
        name = part_name(reg)
        if name is None:
            without.append(reg.name)
        else:
            grouped.setdefault(name, []).append(reg)
    return Parts(tuple(build(name, regs) for name, regs in grouped.items()), tuple(without))
