"""A registered no-op pipeline: backlane's whole per-message path around work that does nothing.

``dramatiq _noop_pipeline --processes P --threads T`` (benchmarks/ on PYTHONPATH) runs
its per-item actor ``process_noopbench`` on queue ``noopbench`` through the registry,
``run_item``, the outcome line and metrics, and the dead-lettering consumer, as
any pipeline's items are run. Used by benchmarks/noop_overhead.py.
"""

from __future__ import annotations

from typing import Any

from backlane.app import setup
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.registry import register

broker = setup()

NAME = "noopbench"


def _fetch(ctx: Context[Any], limit: int) -> list[Any]:
    return []


def _process(ctx: Context[Any], item: Any) -> None:
    """Nothing: what is measured is backlane's path around the work."""


NOOP_PIPELINE = register(
    Pipeline(name=NAME, purpose=Purpose.INTERNAL, fetch=_fetch, process=_process, description="benchmark no-op")
)
