"""CPU of an idle worker process by thread role, with and without py-spy attached.

``python benchmarks/idle_cost.py [--seconds=20] [--spy]`` starts backlane's worker and the
careful actor's (1 process x 8 threads each, nothing to do), waits until each consumes, and
reads every thread's CPU from /proc over ``--seconds``. With ``--spy`` py-spy records the
process at 200 Hz meanwhile, as ``compare.py --profile`` does, and the threads are grouped by
role: py-spy stops the process for each sample and every thread pays for it, so per-thread
CPU measured under it grows with the thread count (docs/benchmarks.md, section 1).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import _harness as h
import _profile

SYSTEMS = {"backlane": "orders", "careful": "careful_orders"}


def main() -> None:
    seconds = float(h.option("seconds", "20"))
    spy_on = "--spy" in sys.argv
    with h.Infra() as infra:
        os.environ["BACKLANE_BROKER__URL"] = infra.amqp_url  # before anything imports actors/
        import scheduler  # noqa: F401 (the pipelines' migrations are found through it)

        db_url = infra.database("postgresql", "idle")
        rows = []
        for system, queue in SYSTEMS.items():
            stack = infra.stack(system, db_url)
            with h.stopping(stack):
                h.start_simulator(stack, "--order-settle-polls", "0")
                if system == "backlane":
                    worker = stack.start_worker(1, 8)
                else:
                    argv = [sys.executable, "-m", "dramatiq", "plain_dramatiq", "--processes", "1", "--threads", "8"]
                    worker = h.spawn(stack, system, argv)
                queues = h.Queues(infra.amqp_url)
                queues.wait_consumers(queue, 1, worker, timeout=120)
                queues.close()
                time.sleep(5.0)  # the forked process's threads all started
                assert worker.proc is not None
                child = min(p for p in h.process_tree(worker.proc.pid) if p != worker.proc.pid)
                raw = infra.workdir / f"{system}-spy.txt"
                spy = _profile.start(child, raw) if spy_on else None
                before, started = _profile.thread_cpu(child), time.monotonic()
                time.sleep(seconds)
                after, elapsed = _profile.thread_cpu(child), time.monotonic() - started
                if spy is not None:
                    _profile.stop(spy)
                roles = _profile.thread_roles(raw) if spy is not None else {}
                for role, used in sorted(_profile.cpu_by_role(before, after, roles).items()):
                    rows.append([system, role, len(used), round(sum(used) / elapsed * 1000, 2)])
        title = f"Idle worker process, {seconds:.0f} s, {'py-spy attached at 200 Hz' if spy_on else 'no profiler'}"
        print(h.table(title, ["system", "threads (role)", "count", "CPU ms/s"], rows))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
