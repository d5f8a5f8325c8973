"""Free TCP ports on loopback, for private test and demo servers.

Private RabbitMQ and PostgreSQL nodes must never collide with a system
service (5672, 5432) or with another test run on the same machine, so every
port they use is asked of the kernel instead of being hard-coded.
"""

from __future__ import annotations

import random
import socket

#: Lowest port handed out; below it live well-known services (RabbitMQ 5672, PostgreSQL 5432, ...).
_LOWEST = 10_000


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' own ports (Linux), or its usual default."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(v) for v in fh.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now.

    It is picked below the kernel's ephemeral range, so no outgoing connection (a worker's
    AMQP or HTTP client, of this run or another) can be given it between now and the moment
    its server binds it; only when that range leaves no room does the kernel pick (port 0).
    The socket is closed before returning; callers keep the port for the lifetime of their
    node (restarts reuse it).
    """
    low, _high = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(50) if low - _LOWEST > 1000 else ():
        port = rng.randrange(_LOWEST, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            if not is_listening(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    """True when some socket on this machine is listening on TCP ``port`` (Linux ``/proc/net``).

    Readiness loops ask this before connecting: a client that connects to a
    port in the ephemeral range while nothing listens there can be given that
    very port as its own and connect to itself (TCP simultaneous open), and
    then the server can no longer bind it. Where /proc is unavailable this
    answers True and callers fall back to connecting.
    """
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            # fields[1] is "HEXADDR:HEXPORT", fields[3] the state; 0A is LISTEN.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return not found_table
