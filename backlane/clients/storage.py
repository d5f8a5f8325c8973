"""Object storage behind one small interface: media objects (track audio, waveforms) by key.

Pipelines talk to :class:`Storage`, never to a path or an SDK, so production can
plug in an object store while demo and tests use :class:`DirectoryStorage`, a
real directory. ``delete`` reports whether the object existed: deleting an
object already gone is a success, which makes physical deletion idempotent.
A key that would escape the storage root (``../``, absolute paths) is rejected
as a permanent error: no retry can make it safe.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Protocol

from backlane.clients.files import atomic_write
from backlane.errors import PermanentError
from backlane.settings import StorageSettings


class InvalidKey(PermanentError):
    """A storage key that is empty or would reach outside the storage root."""

    kind = "invalid_key"


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Delete the object; True when it existed, False when it was already gone."""
        ...


def safe_key(key: str) -> PurePosixPath:
    """The key as a relative path, or :class:`InvalidKey` if it is empty or escapes the root."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidKey(f"storage key must be a non-empty string, got {key!r}")
    if "\\" in key or "\x00" in key:
        raise InvalidKey(f"storage key {key!r} contains a backslash or NUL")
    path = PurePosixPath(key)
    if path.is_absolute() or any(part == ".." for part in path.parts):
        raise InvalidKey(f"storage key {key!r} escapes the storage root")
    parts = [part for part in path.parts if part != "."]
    if not parts:
        raise InvalidKey(f"storage key {key!r} names the storage root itself")
    return PurePosixPath(*parts)


class DirectoryStorage:
    """Objects as files under ``root``; keys are relative paths with ``/`` separators."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        path = self.root.joinpath(*safe_key(key).parts)
        # A symlinked directory inside the root must not lead outside it either.
        root = os.path.realpath(self.root)
        parent = os.path.realpath(path.parent)
        if os.path.commonpath([root, parent]) != root:
            raise InvalidKey(f"storage key {key!r} leads outside the storage root")
        return path

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True


def storage_from_settings(settings: StorageSettings) -> Storage:
    return DirectoryStorage(settings.root)
