"""What both storage backends share: keys and their checks, a listed object, a missing object.

Kept apart from :mod:`backlane.clients.storage` (the interface and the directory backend) so the S3
backend (:mod:`backlane.clients.s3`) imports these without importing the module that chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from backlane.clients.files import relative_parts
from backlane.errors import PermanentError

#: The longest key S3 takes, in UTF-8 bytes; both backends hold to it.
MAX_KEY_BYTES = 1024


class InvalidKey(PermanentError):
    """A storage key that is empty or would reach outside the storage root."""

    kind = "invalid_key"


class ObjectMissing(PermanentError):
    """``read`` of an object that is not there (never stored, or deleted meanwhile)."""

    kind = "object_missing"

    def __init__(self, key: str, where: str = "storage") -> None:
        super().__init__(f"object {key!r} is not in {where}")
        self.key = key


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing shows it."""

    key: str
    size: int
    #: Aware, UTC.
    last_modified: datetime


def safe_key(key: str) -> PurePosixPath:
    """The key as a relative path, or :class:`InvalidKey` if it is empty or escapes the root."""
    parts = relative_parts(key, "storage key", InvalidKey)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"storage key {key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes")
    return parts


def checked_key(key: str) -> str:
    """``key`` itself when it is a safe key in normal form (``a/b``, not ``a//b`` or ``./a``): an
    object store takes a key byte for byte, so a key that only normalises to a safe one is refused."""
    normal = str(safe_key(key))
    if normal != key:
        raise InvalidKey(f"storage key {key!r} is not in normal form (it would be {normal!r})")
    return key


def checked_prefix(prefix: str) -> str:
    """A listing prefix: "" (everything) or a key's beginning, as safe as a key."""
    if prefix == "":
        return prefix
    checked_key(prefix.rstrip("/"))
    return prefix


def checked_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"a listing's limit is a whole number >= 0, got {limit!r}")
    return limit


def as_utc(when: datetime) -> datetime:
    """``when`` as an aware UTC datetime; a naive one is taken to be UTC already (backlane's clock)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
