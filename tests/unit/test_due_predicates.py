"""A table's due predicate is defined once, beside its model (``ORDERS_DUE``...): it is the
predicate of the table's partial index and the condition of every claim, status count and
guarded write. The migrations keep their literal SQL, so these tests hold them to the models:
were the two to differ, the claims would stop using the index (O(table) instead of O(batch))."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Index, create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from backlane.db.migrate import MIGRATIONS_DIR, upgrade
from backlane.db.models import Base


def migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, MIGRATIONS_DIR / "versions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared(name: str) -> Index:
    return next(index for table in Base.metadata.tables.values() for index in table.indexes if index.name == name)


def one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


@pytest.mark.parametrize(
    ("index", "revision", "predicate"),
    [
        ("ix_orders_due", "0001_orders", "UNSETTLED"),
        ("ix_tracks_due", "0003_tracks_exports_staging", "DELETED"),
        ("ix_staging_batches_due", "0003_tracks_exports_staging", "OPEN_BATCH"),
    ],
)
@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"])
def test_the_migrations_index_predicate_is_the_models(index: str, revision: str, predicate: str, dialect: Any) -> None:
    ddl = one_line(str(CreateIndex(declared(index)).compile(dialect=dialect)))
    assert ddl.endswith(f" WHERE {getattr(migration(revision), predicate)}")


def test_the_migrated_database_has_exactly_the_indexes_the_models_declare(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/migrated.db"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
        migrated = {name: one_line(sql) for name, sql in rows}
    engine.dispose()
    models = {
        index.name: one_line(str(CreateIndex(index).compile(dialect=sqlite.dialect())))
        for table in Base.metadata.tables.values()
        for index in table.indexes
    }
    assert migrated == models


def test_a_due_predicates_values_are_compiled_into_the_statement_once() -> None:
    """Literals, not ``literal_execute`` parameters: SQLAlchemy renders those again at every
    execution of a cached statement (a tenth of a per-order statement's CPU)."""
    from sqlalchemy import select

    from actors.orders.models import ORDERS_DUE, Order
    from backlane.db.models.base import literal_in

    compiled = select(Order.id).where(ORDERS_DUE).compile(dialect=postgresql.dialect())
    assert not compiled.literal_execute_params and not compiled.post_compile_params
    assert one_line(str(compiled)).endswith("WHERE orders.status IN ('pending', 'placed')")
    quoted = literal_in(Order.status, ["it's"]).compile(dialect=sqlite.dialect())
    assert str(quoted) == "orders.status = 'it''s'"
    with pytest.raises(TypeError, match="takes strings"):
        literal_in(Order.status, [1])  # type: ignore[list-item]
