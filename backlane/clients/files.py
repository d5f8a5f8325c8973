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
from pathlib import Path


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
    with open(path, "r+b" if path.exists() else "w+b") as handle:
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
    with open(partial, "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, destination)
    fsync_dir(destination.parent)
