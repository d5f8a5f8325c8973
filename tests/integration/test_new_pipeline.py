"""A brand-new pipeline in one file: its table, its settings class, its process,
registered twice with two settings sections read from the environment, run end to end
on the real broker by a real worker. Nothing outside this file is edited (see the
"Adding a pipeline" page, docs/adding-a-pipeline.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dramatiq
import pytest
from sqlalchemy import String, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backlane.core.discovery import declare_discover_actors, discover
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.registry import REGISTRY, Registered, register
from backlane.core.table import ItemTable, TableSettings
from tests.integration.conftest import App
from tests.waiting import wait_until


class Base(DeclarativeBase):
    pass


class Greeting(Base):
    """The pipeline's table: rows waiting to be greeted by a named greeter."""

    __tablename__ = "greetings"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    greeter: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(50))
    text: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]


class GreeterSettings(TableSettings):
    #: How the greeting starts.
    salutation: str = "Hello"


#: Due: a greeting without its text (nor a failure); each greeter claims its own rows, in id order.
GREETINGS = ItemTable(
    Greeting,
    due=Greeting.text.is_(None) & Greeting.failure_reason.is_(None),
    order_by=[Greeting.id],
    owner=Greeting.greeter,
    done=Greeting.text.is_not(None),
    failed=Greeting.failure_reason.is_not(None),
    fail=lambda reason, _now: {"failure_reason": reason},
)


def process(ctx: Context[GreeterSettings], item: Any) -> None:
    text = f"{ctx.config.salutation}, " + Greeting.name + "!"
    with ctx.db.connection() as connection:
        connection.execute(update(Greeting).where(GREETINGS.row(ctx, item)).values(text=text))


def greeter(name: str) -> Pipeline[GreeterSettings]:
    return Pipeline(
        name=name,
        purpose=Purpose.INTERNAL,
        config=GreeterSettings,
        table=GREETINGS,
        process=process,
        defaults={"max_items": 3},
    )


@pytest.fixture(scope="module")
def greeters(app_broker: Any) -> tuple[Registered, Registered]:
    english, french = register(greeter("greeter_en")), register(greeter("greeter_fr"))
    declare_discover_actors(REGISTRY)
    return english, french


def test_a_new_pipeline_registered_twice_runs_end_to_end(
    app: App, greeters: tuple[Registered, Registered], worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKLANE_GREETER_FR__SALUTATION", "Bonjour")
    monkeypatch.setenv("BACKLANE_GREETER_FR__MAX_ITEMS", "5")
    Base.metadata.create_all(app.db.engine)
    english, french = greeters
    with app.db.transaction() as session:
        for who, greeter_name in [("ada", "greeter_en"), ("bob", "greeter_en"), ("cleo", "greeter_fr")] * 2:
            session.execute(insert(Greeting).values(greeter=greeter_name, name=who))
    assert (english.context().config.salutation, english.context().config.max_items) == ("Hello", 3)
    assert (french.context().config.salutation, french.context().config.max_items) == ("Bonjour", 5)

    assert discover(english).enqueued == 3  # its own limit; the fourth waits for the next tick
    assert discover(french).enqueued == 2

    def texts() -> list[tuple[str, str | None]]:
        with app.db.transaction() as session:
            return [(g.greeter, g.text) for g in session.scalars(select(Greeting).order_by(Greeting.id))]

    wait_until(lambda: sum(text is not None for _g, text in texts()) == 5, timeout=30, what="five greetings")
    assert discover(english).enqueued == 1
    wait_until(lambda: all(text is not None for _g, text in texts()), timeout=30, what="every greeting")
    assert sorted(texts()) == sorted(
        [("greeter_en", "Hello, ada!"), ("greeter_en", "Hello, bob!")] * 2 + [("greeter_fr", "Bonjour, cleo!")] * 2
    )
    # The table gave each registration its status counts, of its own rows.
    assert english.pipeline.stats is not None and french.pipeline.stats is not None
    assert english.pipeline.stats(english.context()) == {"due": 0, "in_flight": 0, "done": 4, "failed": 0}
    assert french.pipeline.stats(french.context()) == {"due": 0, "in_flight": 0, "done": 2, "failed": 0}
