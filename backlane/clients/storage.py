"""Object storage behind one small interface: media objects (track audio, waveforms, images) by key.

Pipelines talk to :class:`Storage`, never to a path or an SDK: production points
``BACKLANE_STORAGE__KIND=s3`` at an S3-compatible store (:mod:`backlane.clients.s3`:
AWS S3, MinIO, Ceph RGW, Cloudflare R2), while the demo and most tests use
:class:`DirectoryStorage`, a real directory. ``delete`` reports whether the object
existed: deleting an object already gone is a success, which makes physical deletion
idempotent. ``read`` of a missing object is :class:`ObjectMissing`, permanent. A key
that would escape the storage root (``../``, absolute paths) is rejected as a
permanent error on both backends: no retry can make it safe.

``list(prefix, older_than, limit)`` yields the objects under ``prefix`` last modified
before ``older_than`` (all of them when None), at most ``limit``, as
:class:`StoredObject` (``last_modified`` an aware UTC datetime), in key order
(the directory backend: in key order within each directory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from backlane.clients.files import atomic_write, confined_path
from backlane.clients.objects import (
    MAX_KEY_BYTES,
    InvalidKey,
    ObjectMissing,
    StoredObject,
    as_utc,
    checked_key,
    checked_limit,
    checked_prefix,
    safe_key,
)
from backlane.settings import StorageSettings

__all__ = [
    "MAX_KEY_BYTES",
    "DirectoryStorage",
    "InvalidKey",
    "ObjectMissing",
    "Storage",
    "StoredObject",
    "check_storage",
    "checked_key",
    "checked_prefix",
    "safe_key",
    "storage_from_settings",
]


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def read(self, key: str) -> bytes:
        """The object's bytes; :class:`ObjectMissing` when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Delete the object; True when it existed, False when it was already gone."""
        ...

    def list(self, prefix: str = "", older_than: datetime | None = None, limit: int = 1000) -> Iterator[StoredObject]:
        """Objects under ``prefix`` last modified before ``older_than``, at most ``limit``, by key."""
        ...


class DirectoryStorage:
    """Objects as files under ``root``; keys are relative paths with ``/`` separators."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        # The same check as export files: no '..', no absolute key, no symlink leading out.
        safe_key(key)
        return confined_path(self.root, key, "storage key", InvalidKey)

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(key, f"storage directory {str(self.root)!r}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "", older_than: datetime | None = None, limit: int = 1000) -> Iterator[StoredObject]:
        checked_prefix(prefix)
        remaining = checked_limit(limit)
        cutoff = as_utc(older_than).timestamp() if older_than is not None else None
        root = Path(self.root)
        if remaining == 0 or not root.is_dir():
            return
        for key in self._keys(root, prefix):
            try:
                info = (root / key).stat()
            except FileNotFoundError:
                continue  # deleted while we listed: not there any more
            if cutoff is not None and info.st_mtime >= cutoff:
                continue
            yield StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))
            remaining -= 1
            if remaining == 0:
                return

    @staticmethod
    def _keys(root: Path, prefix: str) -> Iterator[str]:
        """Every file's key under ``root`` starting with ``prefix``, in key order, without following
        symlinks out (a link is not an object) and without the temporary files of a write under way."""
        stack = [""]
        while stack:
            directory = stack.pop()
            try:
                entries = sorted(os.scandir(root / directory) if directory else os.scandir(root), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            subdirectories = []
            for entry in entries:
                key = f"{directory}/{entry.name}" if directory else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if prefix.startswith(key + "/") or key.startswith(prefix) or prefix == key:
                        subdirectories.append(key)
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix) and not _is_temporary(entry.name):
                    yield key
            stack.extend(reversed(subdirectories))


def _is_temporary(name: str) -> bool:
    """A file :func:`~backlane.clients.files.atomic_write` is still building (``.name.<hex>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


_cache_lock = threading.Lock()
_cached: tuple[StorageSettings, Storage] | None = None


def storage_from_settings(settings: StorageSettings) -> Storage:
    """The backend ``settings`` choose (``kind``: ``directory`` or ``s3``), built once per settings
    and shared by the process's threads (an S3 client is costly to build and thread-safe)."""
    global _cached
    with _cache_lock:
        if _cached is not None and _cached[0] == settings:
            return _cached[1]
        storage: Storage
        if settings.kind == "s3":
            from backlane.clients.s3 import S3Storage

            storage = S3Storage(settings)
        else:
            storage = DirectoryStorage(settings.root)
        _cached = (settings.model_copy(), storage)
        return storage


def check_storage(settings: StorageSettings) -> None:
    """At start-up: a :class:`~backlane.errors.Problem` naming the setting (or the extra to install)
    when the chosen backend cannot work; nothing is contacted."""
    if settings.kind == "s3":
        from backlane.clients.s3 import check_settings

        check_settings(settings)
