"""The declarative base every table shares, and how a due predicate is written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ColumnElement, DateTime, Integer, literal_column
from sqlalchemy.orm import DeclarativeBase

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


def literal_in(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``column = 'a'`` or ``column IN ('a', 'b')`` with the values written into the SQL.

    This is how a table's due predicate is defined, once, beside its model: the same
    expression is its partial index's WHERE clause and every claim's condition. Bound
    parameters would keep the planner from proving that a query's condition implies
    the index's (SQLite always, PostgreSQL in a generic plan); literals make the query
    say exactly what the index says. They are part of the statement as compiled (not
    ``literal_execute`` parameters, which SQLAlchemy renders again at every execution:
    a tenth of a per-order statement's CPU)."""
    literals = [literal_column(_quoted(value), column.type) for value in values]
    if len(literals) == 1:
        return column == literals[0]  # type: ignore[no-any-return]
    return column.in_(literals)  # type: ignore[no-any-return]


def _quoted(value: str) -> str:
    """An SQL string literal (standard quoting, the same on PostgreSQL and SQLite)."""
    if not isinstance(value, str):
        raise TypeError(f"literal_in takes strings, not {type(value).__name__}: {value!r}")
    return "'" + value.replace("'", "''") + "'"
