"""Where the migrations are: backlane's own history, and each registered pipeline's folder.

A pipeline's tables are migrated from a ``migrations`` folder beside the module that
declares it (``actors/<name>/migrations/``), so a new pipeline brings its migrations in
its own folder and no list names it. Registration records the folder here (a leaf
module: the registry and the migration runner both read it without importing each other).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: The history shipped with backlane (every table made before pipelines had folders).
SHARED_VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"

_pipeline_folders: dict[str, Path] = {}


def folder_of(function: Any) -> Path | None:
    """The ``migrations`` folder beside the module that defines ``function``, if there is one."""
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    source = getattr(module, "__file__", None)
    if source is None:
        return None
    folder = Path(source).resolve().parent / "migrations"
    return folder if folder.is_dir() else None


def remember(pipeline: str, function: Any) -> None:
    """Record pipeline ``pipeline``'s migrations folder, found from one of its functions."""
    folder = folder_of(function)
    if folder is not None:
        _pipeline_folders[pipeline] = folder


def forget(pipeline: str) -> None:
    _pipeline_folders.pop(pipeline, None)


def version_locations() -> list[Path]:
    """Every folder of revisions: the shared history, then each registered pipeline's."""
    folders = [SHARED_VERSIONS, *_pipeline_folders.values()]
    return list(dict.fromkeys(folder for folder in folders if folder.is_dir()))
