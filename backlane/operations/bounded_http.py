"""An HTTP/1.0 server whose cost is bounded whatever the network sends.

The stdlib's ThreadingHTTPServer starts a thread per connection and waits on it for
ever: a flood is as many threads, a client that connects and sends nothing holds
one for good. Here one I/O thread reads requests, without blocking, from at most
``max_connections`` sockets, each given ``request_timeout`` seconds and
``max_request_bytes`` for its whole request (a slowloris client costs a socket,
and the oldest such socket makes room for a new one). Only complete requests go to
a fixed pool of ``threads`` handler threads, through a queue of at most ``queue``;
beyond it the I/O thread answers ``503 busy`` at once. Handlers are stdlib
:class:`~http.server.BaseHTTPRequestHandler` subclasses (``do_GET``), answering once
per connection, their writes bounded by the same timeout.
"""

from __future__ import annotations

import io
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

logger = logging.getLogger("backlane.metrics")

_BUSY_BODY = b'{"status": "busy", "error": "the endpoint is busy: try again in a second"}'


def _response(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.0 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


BUSY = _response("503 Service Unavailable", _BUSY_BODY, "Retry-After: 1")
TOO_LARGE = _response("431 Request Header Fields Too Large", b'{"error": "request too large"}')
TIMED_OUT = _response("408 Request Timeout", b'{"error": "request not received in time"}')


@dataclass(frozen=True)
class Limits:
    threads: int = 4
    queue: int = 256
    max_connections: int = 512
    request_timeout: float = 5.0
    max_request_bytes: int = 8192


@dataclass
class _Connection:
    sock: socket.socket
    address: Any
    deadline: float
    data: bytearray = field(default_factory=bytearray)


class _SocketWriter(io.BufferedIOBase):
    """Writes go straight out with sendall (bounded by the socket's timeout), nothing buffered."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        return len(memoryview(b))


class ReadRequestHandler(BaseHTTPRequestHandler):
    """A handler fed the request the I/O thread already read (``request`` is a _Connection)."""

    protocol_version = "HTTP/1.0"  # one request per connection

    def setup(self) -> None:
        conn: _Connection = self.request
        self.connection = conn.sock
        self.rfile = io.BytesIO(bytes(conn.data))
        self.wfile = _SocketWriter(conn.sock)


class BoundedHTTPServer:
    """Listens on ``address`` (raises OSError, EADDRINUSE included, like HTTPServer does)."""

    def __init__(
        self, address: tuple[str, int], handler: Callable[..., BaseHTTPRequestHandler], limits: Limits
    ) -> None:
        self.handler, self.limits = handler, limits
        # A flood of connects waits in the kernel, not in SYN retransmits (1 s, 3 s, ...).
        self.socket = socket.create_server(address, backlog=max(128, limits.max_connections))
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._reading: dict[int, _Connection] = {}  # accept order: the first is the oldest
        self._work: queue.Queue[_Connection | None] = queue.Queue()
        self._held = 0  # queued or being handled
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._stopped = threading.Event()
        #: Answers given by the I/O thread itself, by kind (tests and the benchmark read it).
        self.refused = {"busy": 0, "too large": 0, "timed out": 0, "evicted": 0}
        self._threads = [
            threading.Thread(target=self._handle_loop, name=f"endpoint-{i}", daemon=True) for i in range(limits.threads)
        ]

    # -- the I/O thread -------------------------------------------------------------------
    def serve_forever(self) -> None:
        for thread in self._threads:
            thread.start()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._accepting = False
        self._resume_accepting()
        try:
            while not self._stopping:
                timeout = 1.0
                if self._reading:
                    oldest = next(iter(self._reading.values()))
                    timeout = max(0.0, min(timeout, oldest.deadline - time.monotonic()))
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        with _ignored():
                            self._wake_r.recv(4096)
                    else:
                        self._read(key.data)
                self._expire()
                self._resume_accepting()
        finally:
            for conn in list(self._reading.values()):
                self._drop(conn)
            for _ in self._threads:
                self._work.put(None)
            self._selector.close()
            self._stopped.set()

    def _room(self) -> bool:
        with self._lock:
            return len(self._reading) + self._held < self.limits.max_connections

    def _resume_accepting(self) -> None:
        if not self._accepting and not self._stopping and self._room():
            self._selector.register(self.socket, selectors.EVENT_READ, None)
            self._accepting = True

    def _accept(self) -> None:
        for _ in range(256):
            if not self._room():
                if not self._reading:  # everything held is queued work: let the kernel hold the rest
                    self._selector.unregister(self.socket)
                    self._accepting = False
                    return
                self.refused["evicted"] += 1
                self._drop(next(iter(self._reading.values())))  # the slowest reader makes room
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: try again on the next round
                logger.debug("accept failed: %s", exc)
                return
            sock.setblocking(False)
            conn = _Connection(sock, address, time.monotonic() + self.limits.request_timeout)
            self._reading[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        conn.data += chunk
        end = _header_end(conn.data)
        if (end if end is not None else len(conn.data)) > self.limits.max_request_bytes:
            self._answer(conn, TOO_LARGE, "too large")
        elif end is not None:
            self._unwatch(conn)
            with self._lock:
                full = self._work.qsize() >= self.limits.queue
                if not full:
                    self._held += 1
            if full:
                self._answer(conn, BUSY, "busy", watched=False)
            else:
                self._work.put(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._reading.values() if c.deadline <= now]:
            self._answer(conn, TIMED_OUT, "timed out")

    def _answer(self, conn: _Connection, response: bytes, kind: str, *, watched: bool = True) -> None:
        """A short answer from the I/O thread: what fits in the socket's buffer (all of it, in
        practice), never waiting."""
        self.refused[kind] += 1
        with _ignored():
            conn.sock.send(response)
        if watched:
            self._drop(conn)
        else:
            _close(conn.sock)

    def _unwatch(self, conn: _Connection) -> None:
        self._reading.pop(conn.sock.fileno(), None)
        with _ignored():
            self._selector.unregister(conn.sock)

    def _drop(self, conn: _Connection) -> None:
        self._unwatch(conn)
        _close(conn.sock)

    # -- the handler threads --------------------------------------------------------------
    def _handle_loop(self) -> None:
        while (conn := self._work.get()) is not None:
            try:
                conn.sock.settimeout(self.limits.request_timeout)
                self.handler(conn, conn.address, self)
            except Exception as exc:  # a client gone mid-answer, a timeout: that connection only
                logger.debug("endpoint request from %s failed: %s", conn.address, exc)
            finally:
                _close(conn.sock)
                with self._lock:
                    self._held -= 1
                with _ignored():
                    self._wake_w.send(b"x")  # the I/O thread may be waiting for room to accept

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread) and wait for it."""
        self._stopping = True
        with _ignored():
            self._wake_w.send(b"x")
        self._stopped.wait(10)

    def server_close(self) -> None:
        for s in (self.socket, self._wake_r, self._wake_w):
            _close(s)


def _header_end(data: bytearray) -> int | None:
    for marker in (b"\r\n\r\n", b"\n\n"):
        at = data.find(marker)
        if at >= 0:
            return at + len(marker)
    return None


def _close(sock: socket.socket) -> None:
    with _ignored():
        sock.shutdown(socket.SHUT_WR)
    with _ignored():
        sock.close()


class _ignored:
    """``with _ignored():`` swallows OSError (a peer gone is not this server's problem)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, OSError | ValueError | KeyError)
