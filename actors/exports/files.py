"""What an export file looks like, and where it and its partial file live.

Encoding is pure and deterministic (same products, same bytes), which is what
lets a resumed export equal an uninterrupted one byte for byte: the pages are
encoded one by one and simply concatenated, the CSV header belonging to page 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from backlane import PermanentError
from backlane.clients.files import confined_path, relative_parts
from contracts.products import Product

#: Suffix of the file an export is built in, next to its destination.
PARTIAL_SUFFIX = ".partial"
COLUMNS = tuple(Product.model_fields)


def encode_products(fmt: str, products: Sequence[Product], *, first_page: bool) -> bytes:
    """One page of an export: CSV (header on the first page) or JSON Lines."""
    rows = [product.model_dump(mode="json") for product in products]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if first_page:
            writer.writerow(COLUMNS)
        writer.writerows([row[column] for column in COLUMNS] for row in rows)
        return buffer.getvalue().encode()
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows).encode()
    raise ValueError(f"unknown export format {fmt!r} (csv or jsonl)")


def export_paths(output_dir: str, path: str) -> tuple[Path, Path]:
    """The destination under ``output_dir`` and its partial file beside it; a path that would
    leave ``output_dir`` (``..``, absolute, a symlink leading out) is a PermanentError naming why."""
    final = confined_path(output_dir, path, "export path")
    partial = confined_path(output_dir, path + PARTIAL_SUFFIX, "export path")
    return final, partial


def _files_of(path: str) -> tuple[PurePosixPath, PurePosixPath]:
    """The two files an export writes (destination and partial), normalised and case-folded:
    ``same.csv``, ``./same.csv`` and ``Same.CSV`` (one file on a case-insensitive disk) are one."""
    norm = PurePosixPath(str(relative_parts(path, "export path")).casefold())
    return norm, norm.with_name(norm.name + PARTIAL_SUFFIX)


def path_conflict(path: str, others: Iterable[tuple[str, str]]) -> str | None:
    """Why an export writing ``path`` would collide with one of ``others`` ((name, path) pairs),
    or None: the same file after normalisation, one's destination being the other's partial
    file, or one's file standing where the other needs a directory. Two exports sharing a file
    overwrite each other's pages ("partial file lost", or one export's content in the other's)."""
    mine = _files_of(path)
    for name, other in others:
        try:
            theirs = _files_of(other)
        except PermanentError:  # a path the worker refuses anyway (PathOutsideRoot)
            continue
        for a in mine:
            for b in theirs:
                if a == b or a in b.parents or b in a.parents:
                    return f"export path {path!r} collides with export {name!r} (path {other!r}): {a} and {b}"
    return None
