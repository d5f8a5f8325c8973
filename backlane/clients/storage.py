"""Object storage behind one small interface: media objects (track audio, waveforms) by key.

Pipelines talk to :class:`Storage`, never to a path or an SDK, so production can
plug in an object store while demo and tests use :class:`DirectoryStorage`, a
real directory. ``delete`` reports whether the object existed: deleting an
object already gone is a success, which makes physical deletion idempotent.
A key that would escape the storage root (``../``, absolute paths) is rejected
as a permanent error: no retry can make it safe.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Protocol

from backlane.clients.files import atomic_write, confined_path, relative_parts
from backlane.errors import PermanentError
from backlane.settings import StorageSettings


class InvalidKey(PermanentError):
    """A storage key that is empty or would reach outside the storage root."""

    kind = "invalid_key"


class ObjectMissing(PermanentError):
    """A read of a key that holds no object."""

    kind = "object_missing"

    def __init__(self, key: str) -> None:
        super().__init__(f"no stored object under key {key!r}")
        self.key = key


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def exists(self, key: str) -> bool: ...

    def read(self, key: str) -> bytes:
        """The object's bytes; :class:`ObjectMissing` when there is none."""
        ...

    def delete(self, key: str) -> bool:
        """Delete the object; True when it existed, False when it was already gone."""
        ...


def safe_key(key: str) -> PurePosixPath:
    """The key as a relative path, or :class:`InvalidKey` if it is empty or escapes the root."""
    return relative_parts(key, "storage key", InvalidKey)


class DirectoryStorage:
    """Objects as files under ``root``; keys are relative paths with ``/`` separators."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        # The same check as export files: no '..', no absolute key, no symlink leading out.
        return confined_path(self.root, key, "storage key", InvalidKey)

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True


def storage_from_settings(settings: StorageSettings) -> Storage:
    return DirectoryStorage(settings.root)
