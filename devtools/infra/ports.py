"""Free TCP ports on loopback, for private test and demo servers.

Private RabbitMQ and PostgreSQL nodes must never collide with a system
service (5672, 5432) or with another test run on the same machine, so every
port they use is asked of the kernel instead of being hard-coded.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now.

    The kernel picks it (bind to port 0); the socket is closed before
    returning, so there is a small window in which another process could take
    it. Callers keep the port for the lifetime of their node (restarts reuse
    it), which keeps that window to a single moment per node.
    """
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
