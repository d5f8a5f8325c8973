"""A Dramatiq worker child's ties to the ``dramatiq`` parent that forked it.

Two ways a supervisor stops or loses the parent used to leave the children in a bad state:

* **The parent dies** (``kill -9``, an OOM kill of the main PID). A child writes its logs into a
  pipe the parent read; with the parent gone and its siblings still holding the pipe open, the
  pipe fills, the child blocks in a log call, and its consumer threads keep answering RabbitMQ's
  heartbeats, so the broker never gives its unacked messages to a live worker: they wait out
  their whole lease. :func:`die_with_parent` asks the kernel for SIGKILL when the parent goes.
  SIGKILL, not SIGTERM: a graceful stop logs, and logging is what is blocked; what the child
  held goes back to its queues when its connection closes, and every item's lease and fencing
  check make a redelivery safe.
* **SIGTERM to the whole process group** (systemd's default ``KillMode=control-group``, a
  terminal's process-group kill, ``docker stop`` with an init that forwards to the group). Each
  child gets the SIGTERM twice, once from the supervisor and once forwarded by the parent, and
  Dramatiq reads a second SIGTERM as "kill now": "Killing worker process…", messages abandoned
  mid-flight, exit status 1. :func:`one_stop_per_group_signal` treats a repeat that arrives
  within :data:`REPEAT_WINDOW` of the first as the same request; a repeat later than that still
  kills, as an operator who asks twice expects.

Both are applied from the worker's ``process_boot`` hook (:class:`backlane.messaging.boot.ServiceLifecycle`),
only in a child the ``dramatiq`` CLI forked: the clock and the commands are nobody's children in
this sense, and a clock started from a shell must outlive it under ``nohup``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("backlane.worker")

#: A SIGTERM repeated within this many seconds of the first is the process group's copy of it.
REPEAT_WINDOW = 2.0

_PR_SET_PDEATHSIG = 1


def is_forked_worker() -> bool:
    """Whether this process is a child the ``dramatiq`` CLI started (through multiprocessing)."""
    return multiprocessing.parent_process() is not None


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent exits; False where it cannot (not Linux).

    The kernel ties the request to the parent *thread* that forked this process: Dramatiq forks
    its workers from its main thread, which lives as long as the parent. A parent that died
    before the request was made is seen by the check after it: this process then exits at once.
    """
    parent = os.getppid()
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    origin = multiprocessing.parent_process()
    if os.getppid() != parent or (origin is not None and origin.pid is not None and origin.pid != os.getppid()):
        logger.error("the dramatiq parent process is gone: this worker process exits")
        os._exit(1)
    return True


def one_stop_per_group_signal(
    window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic
) -> Callable[[int, FrameType | None], Any] | None:
    """Wrap the current SIGTERM handler so a repeat within ``window`` seconds is ignored.

    Returns the installed handler (for tests), or None when there is nothing to wrap (the
    default or ignored disposition) or this is not the main thread (only it may set handlers).
    """
    original = signal.getsignal(signal.SIGTERM)
    if not callable(original) or threading.current_thread() is not threading.main_thread():
        return None
    first: list[float] = []

    def handler(signum: int, frame: FrameType | None) -> Any:
        now = clock()
        if first and now - first[0] < window:
            logger.info("SIGTERM again %.2f s after the first (the process group's copy): one stop", now - first[0])
            return None
        if not first:
            first.append(now)
        return original(signum, frame)

    signal.signal(signal.SIGTERM, handler)
    return handler


def tie_to_parent() -> None:
    """Both ties, in a forked Dramatiq worker only."""
    if not is_forked_worker():
        return
    die_with_parent()
    one_stop_per_group_signal()
