"""The pure helpers of benchmarks/end_to_end_latency.py (the benchmark itself is run by hand)."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def e2e() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))  # as `python benchmarks/x.py` has it: `import _harness`
    try:
        yield importlib.import_module("end_to_end_latency")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_percentile_interpolates_between_ranks(e2e: ModuleType) -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert e2e.percentile(values, 0.0) == 1.0
    assert e2e.percentile(values, 1.0) == 4.0
    assert e2e.percentile(values, 0.5) == 2.5
    assert e2e.percentile(values, 0.99) == pytest.approx(3.97)
    assert e2e.percentile([7.0], 0.99) == 7.0
    assert math.isnan(e2e.percentile([], 0.5))


def test_an_order_is_given_the_tick_that_claimed_it(e2e: ModuleType) -> None:
    log = e2e.WorkerLog(discovers=[(10.0, 5), (20.0, 5)])

    def order(created: float, work: float) -> Any:
        return e2e.Order("r", created, 0.0, 0.0, created, [(work, work + 0.1, "waiting")])

    later = order(12.0, 20.5)  # created after the first run: the second one claims it
    raced = order(10.001, 10.2)  # committed just before the first run's claim query
    early = order(5.0, 10.3)
    orders = [later, raced, early]
    e2e.attribute_ticks(orders, log, lambda start: start - 0.01)
    assert [o.tick for o in orders] == [pytest.approx(19.99), pytest.approx(9.99), pytest.approx(9.99)]
