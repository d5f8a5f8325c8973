"""Process handling shared by the private RabbitMQ and PostgreSQL nodes.

Both nodes are long-lived servers started by a test session or the demo. If
that parent dies without cleaning up (SIGKILL, a crashed CI job), a server
left behind keeps its ports and data directory forever, so every node is
started in its own process group (a terminal's Ctrl-C does not reach it
half-way through a teardown) and asks the kernel to signal it when its
parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1

try:  # Resolved here, in the parent: the child of fork() must not import or load anything.
    _prctl: Callable[..., int] | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, teardown still works
    _prctl = None


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    The setting survives ``exec`` of a normal (not set-uid) binary, and is
    applied after ``Popen(user=...)`` has switched user, which would clear it.
    The kernel ties it to the *thread* that forks, so off the main thread
    (say, a test restarting the broker from a helper thread) it is not set
    at all: the child would be killed when that thread ends. Those children
    rely on the atexit handlers and ``stop()`` alone.
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return _preexec


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the whole process group led by ``proc`` (helpers included)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> bool:
    """Ask the group leader to stop with ``sig``; SIGKILL the group after ``timeout`` seconds.

    Only the leader gets ``sig``: the server shuts its helpers down itself,
    and killing a helper first can make it abort (Erlang's VM does when its
    ``erl_child_setup`` goes away). Returns True when the leader exited on
    its own. Whatever the leader did, the group is killed at the end so no
    helper process outlives it.
    """
    graceful = True
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            graceful = False
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    _wait_group_gone(proc.pid, timeout=30)
    return graceful


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait until no live process of group ``pgid`` is left (zombies do not count)."""
    deadline = time.monotonic() + timeout
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group ``pgid`` that still hold resources (Linux ``/proc``).

    ``killpg(pgid, 0)`` is not enough: it also succeeds for zombies that an
    init which does not reap (as in some containers) leaves behind forever.
    Nor is the state letter: a multi-threaded process (the Erlang VM) shows
    ``Z`` as soon as its main thread is gone while its other threads, and its
    listening sockets, are still being torn down.
    """
    members = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            # After the command name: state, ppid, pgrp, ...
            if int(fields[2]) != pgid:
                continue
            if fields[0] == "Z" and len(list((proc_dir / "task").iterdir())) <= 1:
                continue
        except (OSError, IndexError, ValueError):
            continue
        members.append(int(proc_dir.name))
    return members


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, pgrp, ...), or None
    when the process is gone. The name is skipped by its last ``)``: it may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid`` (a dramatiq parent's forked worker processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, zombies included (their CPU is still to be read)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def wait_ports_free(ports: list[int], timeout: float) -> list[int]:
    """Wait until each port can be bound on 127.0.0.1 (as a server with SO_REUSEADDR would).

    Returns the ports still busy after ``timeout``, so the caller can fail
    with a clear message instead of a server dying on ``eaddrinuse``.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(port)
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def privilege_prefix() -> list[str] | None:
    """``[]`` as root, ``["sudo", "-n"]`` with passwordless sudo, else None (we cannot install)."""
    if os.geteuid() == 0:
        return []
    sudo_ok = shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    return ["sudo", "-n"] if sudo_ok else None


def apt_install(packages: list[str]) -> bool:
    """``apt-get update`` then install ``packages`` non-interactively, saying so; True on success.

    False, without trying, where there is no apt-get or no way to be root
    without a password prompt (which would hang CI).
    """
    prefix = privilege_prefix()
    if prefix is None or shutil.which("apt-get") is None:
        return False
    if prefix:  # sudo resets the environment: pass the variable through env(1)
        prefix = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *packages]):
        print("backlane: running", " ".join([*prefix, *cmd]), file=sys.stderr, flush=True)
        if subprocess.run([*prefix, *cmd], env=env, check=False).returncode != 0:
            return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])
