"""The outcome line's own cost, text against JSON, in one process (no broker, no worker).

    python benchmarks/log_format_cost.py [N] [--rounds=5]

``outcomes.record()`` for N succeeded items, as a worker process writes them: through the
batching handler onto a stream handler (writing to /dev/null) whose formatter is Dramatiq's
text format or backlane's JSON formatter, metrics and attempts included as in a worker.
Prints the µs per line of each, interleaved round after round, best and median, and the
formatter's own time per line (best of 5 x 100,000 calls of ``format()`` on an outcome
record: the difference between the two formats, with less of the machine's noise); the
no-op benchmark (``noop_overhead.py --variants=backlane,backlane-json``) gives the same
difference as worker CPU, where the noise of a shared machine is larger than it.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import timeit

import _harness as h
from dramatiq.cli import LOGFORMAT

from backlane.core import log_format, log_limits, outcomes


def per_line_us(formatter: logging.Formatter | None, n: int) -> float:
    with open(os.devnull, "w") as sink:
        target = logging.StreamHandler(sink)
        target.setFormatter(formatter)
        handler = outcomes.BatchingHandler(target, interval=3600)
        logger = outcomes.logger
        saved = logger.handlers[:], logger.propagate, logger.level
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            started = time.perf_counter()
            for item in range(n):
                outcomes.record("noopbench", item, "succeeded", attempt=1, duration_s=0.0001)
            handler.flush()
            return (time.perf_counter() - started) / n * 1e6
        finally:
            logger.handlers[:], logger.propagate, logger.level = saved
            handler.close()


def format_us(formatter: logging.Formatter | None) -> float:
    """The best of 5 x 100,000 calls of ``formatter.format()`` on one outcome record, µs per call."""
    fields = {"pipeline": "noopbench", "item": 1, "outcome": "succeeded", "attempt": 1, "duration_ms": 0.1}
    record = outcomes._made_record(logging.INFO, outcomes._encode(fields), fields)
    calls = 100_000
    assert formatter is not None
    return min(timeit.repeat(lambda: formatter.format(record), number=calls, repeat=5)) / calls * 1e6


def main() -> None:
    (n,) = h.sizes([50_000])[:1]
    rounds = int(h.option("rounds", "5"))
    log_limits.install()  # as in every backlane process
    # The text formatter as the batching handler makes it from Dramatiq's (the date once a second).
    formats = {
        "text": lambda: outcomes._SecondCachingFormatter.like(logging.Formatter(LOGFORMAT)),
        "json": log_format.JsonFormatter,
    }
    results: dict[str, list[float]] = {name: [] for name in formats}
    for _ in range(rounds):
        for name, make in formats.items():
            results[name].append(per_line_us(make(), n))
    base = statistics.median(results["text"])
    rows = [
        [
            name,
            ", ".join(f"{us:.1f}" for us in runs),
            f"{min(runs):.1f}",
            f"{statistics.median(runs):.1f}",
            f"{statistics.median(runs) - base:+.1f}",
            f"{format_us(formats[name]()):.2f}",
        ]
        for name, runs in results.items()
    ]
    print(
        h.table(
            f"Outcome line, {n:,} per round, {rounds} interleaved rounds ({h.machine()}; load {h.load()})",
            ["format", "µs per line per round", "best", "median", "vs text", "format() alone, µs"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
