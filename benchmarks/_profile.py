"""py-spy on one worker process, read back two ways: CPU by thread role, and a worker thread's
time by the part of the stack it was in.

Shared by the benchmarks that take ``--profile=DIR`` (noop_overhead.py, compare.py). py-spy
samples only active (non-idle) threads by default, so a worker thread's samples approximate
its CPU; the per-thread CPU itself comes from /proc, not from the samples.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

#: What a thread is, by the outermost function py-spy saw it run.
ROLES = (
    ("ConsumerThread.run", "consumer"),
    ("WorkerThread.run", "worker thread"),
    ("_CtypesTimeoutManager", "time limit"),
    ("BatchingHandler", "outcome log"),
    ("worker_process", "main"),
    ("_heartbeat", "heartbeat"),
)

#: Where a worker thread's sample is, by the innermost frame whose file path holds the key:
#: the first part matched from the top of the stack down wins, so a JSON dump inside logging
#: counts as logging and a statement compiled inside SQLAlchemy as SQLAlchemy.
PARTS = (
    ("/psycopg/", "database driver (psycopg)"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/httpx/", "HTTP client (httpx, httpcore)"),
    ("/httpcore/", "HTTP client (httpx, httpcore)"),
    ("/h11/", "HTTP client (httpx, httpcore)"),
    ("/pika/", "AMQP (pika)"),
    ("/logging/", "logging"),
    ("/json/", "JSON"),
    ("/prometheus_client/", "metrics"),
    ("/opentelemetry/", "tracing"),
    ("/dramatiq/", "Dramatiq"),
    ("/pydantic", "pydantic"),
    ("/backlane/", "backlane"),
    ("/actors/", "the pipeline's own code"),
    ("/benchmarks/", "the pipeline's own code"),
)


def spy_binary() -> str:
    return str(Path(sys.executable).parent / "py-spy")


def start(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """py-spy recording every thread of ``pid`` to ``out`` (raw collapsed stacks)."""
    argv = [spy_binary(), "record", "--threads", "--full-filenames", "-r", str(rate), "--format", "raw"]
    argv += ["-o", str(out), "-p", str(pid)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the measured work starts
    return spy


def stop(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)  # py-spy writes its output on SIGINT
    spy.wait(30)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of each thread of ``pid``, by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def _samples(raw: Path) -> list[tuple[int, list[str], int]]:
    """(native thread id, frames outermost first, count) of each line of py-spy's raw output."""
    rows = []
    if not raw.exists():
        return rows
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        head, _, rest = stack.partition(";")
        if not head.startswith("thread (") or not rest or not count.isdigit():
            continue
        rows.append((int(head.split("(")[1].split(")")[0], 0), rest.split(";"), int(count)))
    return rows


def thread_roles(raw: Path) -> dict[int, str]:
    """Native thread id -> role, from py-spy's raw output."""
    roles: dict[int, str] = {}
    for tid, frames, _ in _samples(raw):
        joined = ";".join(frames)
        role = next((name for key, name in ROLES if key in joined), None)
        if role is not None and tid not in roles:
            roles[tid] = role
    return roles


def part_of(frames: list[str]) -> str:
    """The part a sample is in: the innermost frame that belongs to one of :data:`PARTS`."""
    for frame in reversed(frames):
        for key, part in PARTS:
            if key in frame:
                return part
    return "other (interpreter, threading, stdlib)"


def worker_thread_parts(raw: Path, role: str = "worker thread") -> Counter[str]:
    """Samples of the threads of ``role`` (by default the ones running actors) by :func:`part_of`."""
    roles = thread_roles(raw)
    parts: Counter[str] = Counter()
    for tid, frames, count in _samples(raw):
        if roles.get(tid) == role:
            parts[part_of(frames)] += count
    return parts


def dumped_roles(pid: int) -> dict[int, str]:
    """Native thread id -> role, from one ``py-spy dump`` of ``pid``: one stop of the process, at
    the end of a run, so (unlike :func:`start`'s sampling) it costs the measured threads nothing."""
    import json

    argv = [spy_binary(), "dump", "--json", "--pid", str(pid)]
    out = subprocess.run(argv, capture_output=True, check=False, timeout=60).stdout
    roles: dict[int, str] = {}
    for thread in json.loads(out or b"[]"):
        joined = ";".join(str(frame.get("name")) for frame in reversed(thread.get("frames", [])))
        role = next((name for key, name in ROLES if key in joined), None)
        if thread.get("os_thread_id") is not None:
            roles[int(thread["os_thread_id"])] = role or str(thread.get("thread_name") or "other")
    return roles


def cpu_by_role(before: dict[int, float], after: dict[int, float], roles: dict[int, str]) -> dict[str, list[float]]:
    """CPU seconds used between ``before`` and ``after`` by each thread, grouped by role."""
    by_role: dict[str, list[float]] = {}
    for tid, cpu in after.items():
        by_role.setdefault(roles.get(tid, "other"), []).append(cpu - before.get(tid, 0.0))
    return by_role
