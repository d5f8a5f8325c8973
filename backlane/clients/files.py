"""Durable file writes: a reader sees a whole old file or a whole new one, never half.

A file is built next to its destination (same directory, so same filesystem),
fsynced, and moved into place with :func:`os.replace`, which is atomic; the
directory is fsynced too so the rename survives a power cut. A file built over
several steps (an export written page by page) is appended at a known offset:
after a crash the caller truncates back to the last offset it recorded, so bytes
written but never recorded cannot end up twice in the result.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path, PurePosixPath

from backlane.errors import PermanentError


class PathOutsideRoot(PermanentError):
    """A relative path that is empty or would reach outside the directory it must stay in."""

    kind = "path_outside_root"


def relative_parts(path: str, what: str = "path", error: type[PermanentError] = PathOutsideRoot) -> PurePosixPath:
    """``path`` as a normalised relative path, or ``error`` when it is empty, absolute or climbs out (``..``)."""
    if not isinstance(path, str) or not path.strip():
        raise error(f"{what} must be a non-empty string, got {path!r}")
    if "\\" in path or "\x00" in path:
        raise error(f"{what} {path!r} contains a backslash or NUL")
    if not path.isprintable() or not _is_unicode(path):  # e.g. bytes a terminal gave that are not UTF-8
        raise error(f"{what} {path!r} holds control characters or is not valid UTF-8 text")
    posix = PurePosixPath(path)
    if posix.is_absolute() or any(part == ".." for part in posix.parts):
        raise error(f"{what} {path!r} escapes {_root_name(what)}: absolute paths and '..' are refused")
    parts = [part for part in posix.parts if part != "."]
    if not parts:
        raise error(f"{what} {path!r} names {_root_name(what)} itself")
    return PurePosixPath(*parts)


def _is_unicode(text: str) -> bool:
    """False for a lone surrogate (how Python keeps bytes that are not UTF-8): it cannot be a file name."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def confined_path(
    root: Path | str, path: str, what: str = "path", error: type[PermanentError] = PathOutsideRoot
) -> Path:
    """``root`` / ``path``, refused for good (``error``) when it would land outside ``root``:
    ``..``, an absolute path, or a symlink (a directory on the way or the file itself) leading out.
    The one check behind tracks' storage keys and export files."""
    joined = Path(root).joinpath(*relative_parts(path, what, error).parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(joined)
    if os.path.commonpath([real_root, real]) != real_root:
        raise error(f"{what} {path!r} leads outside {_root_name(what)} {str(root)!r} through a symlink")
    return joined


def _root_name(what: str) -> str:
    return "its directory" if "key" not in what else "the storage root"


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: temp file in the same dir + fsync + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_at(path: Path, offset: int, data: bytes) -> int:
    """Write ``data`` at ``offset`` of ``path`` (dropping anything after it), fsync, return the new size.

    Raises :class:`FileNotFoundError` when ``offset`` > 0 but the file is missing, and
    :class:`ValueError` when it is shorter than ``offset``: the recorded progress is
    then not on disk and the caller has to start over.
    """
    if offset > 0 and not path.exists():
        raise FileNotFoundError(f"{path} is missing; expected {offset} bytes written")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a symlink put where the file should be is refused, never written through.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with open(fd, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < offset:
            raise ValueError(f"{path} has {size} bytes; expected at least {offset}")
        handle.truncate(offset)
        handle.seek(offset)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        return offset + len(data)


def publish(partial: Path, destination: Path, size: int) -> None:
    """Move a finished ``partial`` file (cut to ``size``) into place atomically."""
    with open(os.open(partial, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)), "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, destination)
    fsync_dir(destination.parent)
