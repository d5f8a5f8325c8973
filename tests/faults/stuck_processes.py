"""Faults where a process is alive but cannot work: frozen, orphaned, blocked by the broker, or
stopped by its supervisor's group signal (issue 27).

What these scenarios add to the suite's accounting: a frozen or orphaned worker must hold no
work (the live ones keep settling while it is stuck, and the recovery does not wait out a
lease), a woken worker must call no vendor again (its lease ran out, a live worker did the
work: ``vendor_repeats`` must stay 0, not merely be answered as a replay), a blocked broker is
one line from the CLI within its timeout and a tick the clock keeps and sends afterwards, and
a process group's SIGTERM is a clean stop.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import httpx

from devtools.infra.process import live_group_members
from devtools.sample import create_orders
from devtools.stack import ManagedProcess
from tests.faults.harness import FaultRun, Infra, Outcome, Scale, fault_run

#: Leases of the freeze scenarios: far shorter than the freeze, so the fence is what keeps a woken
#: worker from repeating work a live one already did.
FREEZE_LEASE = 20
#: The parent-kill scenario's lease: the default, ten minutes. Recovery must not wait for it.
LONG_LEASE = 600
ALARMS = {
    "memory": (("set_vm_memory_high_watermark", "0.00001"), ("set_vm_memory_high_watermark", "0.4")),
    "disk": (("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB")),
}


def _lease_env(seconds: int) -> dict[str, str]:
    env = {f"BACKLANE_{name}__LEASE_SECONDS": str(seconds) for name in ("ORDERS", "TRACKS")}
    env |= {f"BACKLANE_{name.upper()}__LEASE_SECONDS": str(seconds) for name in ("staging_acme", "staging_globex")}
    return env


def _pid(proc: ManagedProcess) -> int:
    if proc.proc is None:
        raise RuntimeError(f"{proc.name} has no process")
    return int(proc.proc.pid)


def _wait_booted(run: FaultRun, timeout: float = 60) -> None:
    """Until every worker has its children (a freeze or kill of a worker still booting proves nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(live_group_members(_pid(w))) >= 2 for w in run.workers()):
            return
        run.sleep(0.5)
    run.problems.append("a worker did not fork its children within 60 s")


def _log_size(proc: ManagedProcess) -> int:
    try:
        return proc.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def _wait_log_quiet(run: FaultRun, proc: ManagedProcess, quiet: float, timeout: float) -> None:
    """Until ``proc``'s log has not grown for ``quiet`` seconds: a woken worker writes a line for
    each item it held (an outcome, a fence, a lost connection), so a quiet log means it is done."""
    deadline = time.monotonic() + timeout
    size, since = _log_size(proc), time.monotonic()
    while time.monotonic() < deadline:
        run.sleep(0.5)
        now = _log_size(proc)
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    run.problems.append(f"{proc.name} was still writing its log {timeout:.0f} s after the freeze ended")


def _worker_freeze(infra: Infra, scale: Scale, seconds: float) -> Outcome:
    label = f"worker frozen {seconds:.0f} s (SIGSTOP, leases {FREEZE_LEASE} s)"
    with fault_run(infra, label, scale, env=_lease_env(FREEZE_LEASE)) as run:
        run.start()
        _wait_booted(run)
        run.wait_settled_part(0.15)
        frozen = run.workers()[0]
        pgid = _pid(frozen)
        before = run.settled_orders()
        os.killpg(pgid, signal.SIGSTOP)  # the parent and its children, as a frozen VM would be
        frozen_at = time.monotonic()
        progress: list[tuple[float, int]] = []
        try:
            while time.monotonic() - frozen_at < seconds:
                run.sleep(min(5.0, seconds - (time.monotonic() - frozen_at)))
                progress.append((time.monotonic() - frozen_at, run.settled_orders()))
        finally:
            os.killpg(pgid, signal.SIGCONT)
        during = progress[-1][1] - before if progress else 0
        all_done = next((at for at, settled in progress if settled >= len(run.order_ids)), None)
        run.notes.append(
            f"{during} orders settled by the live worker during the {seconds:.0f} s freeze"
            + (f"; every order settled {all_done:.0f} s into it" if all_done is not None else "")
        )
        if during <= 0:
            run.problems.append("nothing settled while one worker was frozen: the frozen one held the work")
        run.clear_fault()
        run.wait_settled()
        # The woken worker runs what it held, its leases long gone: the fence and the guarded
        # writes must make all of it do nothing. It has tried all of it once its log is quiet.
        _wait_log_quiet(run, frozen, quiet=3.0, timeout=60.0)
        outcome = run.account()
        log = frozen.log_tail(200_000)
        fenced = log.count("was claimed again while this worker was stuck")
        taken_over = log.count("was taken over during its scrape")
        outcome.notes.append(
            f"the woken worker: {fenced} batch(es) left at the fence (re-claimed while it was stopped), "
            f"{taken_over} scrape(s) it had sent before the stop found taken over and not recorded"
        )
        # A call the worker had already sent when it was stopped cannot be taken back: the live
        # worker that re-claims the batch calls again under the same Idempotency-Key and the vendor
        # answers with a replay (scraped once). At most one such call per thread of the frozen
        # process; any more would be calls the woken worker made after its lease ran out.
        if run.vendor_repeats > run.threads:
            outcome.problems.append(
                f"{run.vendor_repeats} staging batch(es) called again at the vendor: more than the "
                f"{run.threads} calls the frozen worker's threads can have had in flight"
            )
        return outcome


def worker_freeze_45s(infra: Infra, scale: Scale) -> Outcome:
    """One worker's process group SIGSTOPped 45 s with 20 s leases; orders, tracks and staging."""
    return _worker_freeze(infra, scale, 45)


def worker_freeze_150s(infra: Infra, scale: Scale) -> Outcome:
    """The same freeze for 150 s: longer than RabbitMQ's heartbeat drop and every lease."""
    return _worker_freeze(infra, scale, 150)


def parent_kill9(infra: Infra, scale: Scale) -> Outcome:
    """kill -9 of a worker's ``dramatiq`` parent only (an OOM kill, a supervisor signalling the
    main PID): its children must exit by themselves, and their unacked work must come back at
    once, not after the 600 s lease."""
    with fault_run(infra, "worker parent kill -9 (lease 600 s)", scale, env=_lease_env(LONG_LEASE)) as run:
        run.start()
        _wait_booted(run)
        run.wait_settled_part(0.2)
        victim = run.workers()[0]
        pgid = _pid(victim)
        children = [pid for pid in live_group_members(pgid) if pid != pgid]
        run.expected_exits.add(id(victim))
        os.kill(pgid, signal.SIGKILL)
        killed_at = time.monotonic()
        while live_group_members(pgid) and time.monotonic() - killed_at < 30:
            time.sleep(0.2)
        left = live_group_members(pgid)
        gone_after = time.monotonic() - killed_at
        if left:
            run.problems.append(f"{len(left)} child process(es) of the killed parent still alive after 30 s")
            for pid in left:  # do not let them skew the rest of the run
                os.kill(pid, signal.SIGKILL)
        else:
            run.notes.append(f"its {len(children)} children exited {gone_after:.1f} s after the parent's kill")
        run.restarts += 1
        run.start_worker(victim.host)
        run.clear_fault()
        run.wait_settled()
        outcome = run.account()
        if outcome.recover_seconds is not None and outcome.recover_seconds > LONG_LEASE / 4:
            outcome.problems.append(f"recovery took {outcome.recover_seconds} s: it waited for the lease")
        return outcome


def _alarm_on(run: FaultRun) -> bool:
    url = f"{run.infra.management_url()}/api/health/checks/alarms"
    return httpx.get(url, auth=("guest", "guest"), timeout=10).status_code != 200


def _broker_alarm(infra: Infra, scale: Scale, kind: str) -> Outcome:
    """RabbitMQ's ``kind`` alarm across a clock tick, the clock alone finding new work."""
    on, off = ALARMS[kind]
    with fault_run(infra, f"RabbitMQ {kind} alarm across a tick", scale, kick=False) as run:
        run.start()
        run.wait_settled_part(0.2, timeout=180)
        infra.rabbitmq.ctl(*on)
        try:
            deadline = time.monotonic() + 30
            while not _alarm_on(run) and time.monotonic() < deadline:
                time.sleep(0.2)
            raised_at = time.time()
            timeout = 3.0  # BACKLANE_BROKER__COMMAND_TIMEOUT's default
            started = time.monotonic()
            answer = run.cli("trigger", "orders", timeout=60)
            took = time.monotonic() - started
            lines = [line for line in (answer.stdout + answer.stderr).splitlines() if line.strip()]
            run.notes.append(f"`backlane trigger orders` in {took:.1f} s, exit {answer.returncode}: {lines!r:.200}")
            if answer.returncode == 0 or len(lines) != 1 or "blocking publishers" not in lines[0]:
                run.problems.append(f"trigger during the alarm did not answer with one line: {lines!r:.300}")
            elif f"{kind} alarm" not in lines[0]:
                run.problems.append(f"trigger's line does not name the {kind} alarm: {lines[0]}")
            if took > timeout + 10:  # the command's own start-up, then its timeout
                run.problems.append(f"trigger took {took:.1f} s with a {timeout:.0f} s command timeout")
            status = run.cli("status", timeout=60)
            shown = status.stdout + status.stderr
            if status.returncode == 0 or "HEALTH healthy" in shown:
                run.problems.append("`backlane status` called the system healthy during the alarm")
            # New work only a tick can find, and the alarm held across that tick.
            run.order_ids += create_orders(run.db, max(10, scale.orders // 10), datetime.now(UTC))
            next_tick = (int(raised_at // 60) + 1) * 60
            run.sleep(max(10.0, next_tick + 8 - time.time()))
            run.notes.append(
                f"alarm on {time.time() - raised_at:.0f} s, across the tick of "
                f"{time.strftime('%H:%M', time.localtime(next_tick))}"
            )
        finally:
            infra.rabbitmq.ctl(*off)
        run.clear_fault()
        run.wait_settled(timeout=scale.settle_timeout + 60)
        outcome = run.account()
        skipped = [c.name for c in run.clocks() if "older than" in c.log_tail(4000)]
        if skipped:
            outcome.problems.append(f"{skipped} skipped the tick due during the alarm as stale")
        if outcome.recover_seconds is not None and outcome.recover_seconds > 45:
            late = f"{outcome.recover_seconds} s to settle after the alarm"
            outcome.problems.append(f"{late}: the tick waited for the next one")
        return outcome


def memory_alarm(infra: Infra, scale: Scale) -> Outcome:
    """RabbitMQ's memory alarm (every publisher blocked) across a tick."""
    return _broker_alarm(infra, scale, "memory")


def disk_alarm(infra: Infra, scale: Scale) -> Outcome:
    """RabbitMQ's disk alarm across a tick."""
    return _broker_alarm(infra, scale, "disk")


def group_sigterm(infra: Infra, scale: Scale) -> Outcome:
    """SIGTERM to a worker's whole process group mid-run (systemd's default stop): exit 0, nothing
    lost; the supervisor starts another."""
    with fault_run(infra, "SIGTERM to a worker's process group", scale) as run:
        run.start()
        _wait_booted(run)
        run.wait_settled_part(0.3)
        victim = run.workers()[0]
        run.expected_exits.add(id(victim))
        os.killpg(_pid(victim), signal.SIGTERM)
        assert victim.proc is not None
        try:
            code: int | None = victim.proc.wait(timeout=90)
        except Exception:
            code = None
        run.notes.append(f"the worker exited with {code}")
        if code != 0:
            run.problems.append(f"group SIGTERM ended the worker with {code}, not 0")
            if code is None:
                victim.kill()
        run.restarts += 1
        run.start_worker(victim.host)
        run.clear_fault()
        run.wait_settled()
        return run.account()
