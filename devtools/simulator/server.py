"""The simulator's HTTP server: a route table, one request handler, and `Simulator`.

It is a real HTTP server on loopback (stdlib only) because the point is to
exercise the real clients: connection pools, timeouts, retries, Retry-After
parsing. Service modules (orders.py, later catalog/products/vendors) add
routes through `register_route`, so the handler itself never grows per service.

Speed matters (~1,500 req/s on 2 cores): each response is written with a
single send (status line, headers and body together) on a TCP_NODELAY socket,
which avoids the Nagle/delayed-ACK stalls of http.server's default two writes,
and nothing is logged per request.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devtools.simulator.state import SimulatorConfig, SimulatorState

Reply = tuple[int, Any, dict[str, str]]
# func(state, match, body, headers, query) -> (status, json_obj, extra_headers); headers is
# case-insensitive (email.message.Message), query maps each name to its last value.
RouteFunc = Callable[[SimulatorState, "re.Match[str]", bytes, Any, dict[str, str]], Reply]


class HttpError(Exception):
    """Raised by a route function to answer with an error without building the tuple."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object, or raise HttpError(400)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise HttpError(400, {"error": "invalid JSON body"}) from None
    if not isinstance(data, dict):
        raise HttpError(400, {"error": "body must be a JSON object"})
    return data


@dataclass(frozen=True)
class Route:
    """One endpoint: method + full-match path regex, the service it belongs to (for outages),
    its rate-limit key and its stats key."""

    method: str
    pattern: re.Pattern[str]
    service: str
    rate_key: str | None
    func: RouteFunc
    name: str


_ROUTES: list[Route] = []


def register_route(
    method: str, pattern: str, service: str, rate_key: str | None, func: RouteFunc, name: str | None = None
) -> Route:
    """Add an endpoint; `name` (default: rate_key) is its key in stats["requests"]."""
    route = Route(method.upper(), re.compile(pattern), service, rate_key, func, name or rate_key or pattern)
    _ROUTES.append(route)
    return route


def unregister_route(route: Route) -> None:
    """Remove a route added with register_route (tests that add throwaway endpoints)."""
    _ROUTES.remove(route)


# guard(state, route, headers) -> a rejection, or None to let the request through (e.g. identity.py's
# bearer-token check); run after the outage/rate-limit/failure gates, before the route function.
GuardFunc = Callable[[SimulatorState, Route, Any], "Reply | None"]
_GUARDS: list[GuardFunc] = []


def register_guard(func: GuardFunc) -> None:
    """Add a check every routed request passes before its route function runs."""
    _GUARDS.append(func)


AdminFunc = Callable[[SimulatorState, "re.Match[str]", bytes], Reply]
_ADMIN_ROUTES: list[tuple[str, re.Pattern[str], AdminFunc]] = []


def register_admin_route(method: str, pattern: str, func: AdminFunc) -> None:
    """Add a service's own admin endpoint under /_admin/ (e.g. replacing its data from a test)."""
    _ADMIN_ROUTES.append((method.upper(), re.compile(pattern), func))


def _admin(state: SimulatorState, method: str, path: str, body: bytes) -> Reply:
    """Admin endpoints: never delayed, failed, taken down, limited or counted."""
    if path == "/_admin/health" and method == "GET":
        return 200, {"ok": True}, {}
    if path == "/_admin/stats" and method == "GET":
        return 200, state.stats(), {}
    if path == "/_admin/config" and method == "GET":
        return 200, state.config.to_dict(), {}
    if path == "/_admin/config" and method == "POST":
        try:
            return 200, state.update_config(json_object(body)).to_dict(), {}
        except ValueError as exc:
            return 400, {"error": str(exc)}, {}
    if path == "/_admin/reset" and method == "POST":
        options = json_object(body) if body.strip() else {}
        state.reset(config=bool(options.get("config")))
        return 200, {"ok": True, "config": state.config.to_dict()}, {}
    for route_method, pattern, func in _ADMIN_ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            return func(state, match, body)
    return 404, {"error": "not found"}, {}


class _Handler(BaseHTTPRequestHandler):
    """Dispatches every method through the route table; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "backlane-simulator"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging: stderr writes cost throughput and flood test output."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        """Read the body, then answer admin requests directly and others through the gates."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send(400, {"error": "bad Content-Length"}, {})
            return
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        path = parts.path
        state = self.server.state
        if path.startswith("/_admin/"):
            try:
                self._send(*_admin(state, self.command, path, body))
            except HttpError as exc:
                self._send(exc.status, exc.body, {})
            return
        latency = state.latency_seconds()
        if latency > 0:
            time.sleep(latency)
        status, payload, headers = self._route(state, path, parts.query, body)
        state.record_status(status)
        self._send(status, payload, headers)

    def _route(self, state: SimulatorState, path: str, query: str, body: bytes) -> Reply:
        """Find the route, pass the gates, call the route function."""
        method_allowed = False
        for route in _ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != self.command:
                method_allowed = True
                continue
            rejection = state.admit(route.name, route.service, route.rate_key)
            if rejection is not None:
                return rejection
            for guard in _GUARDS:
                refused = guard(state, route, self.headers)
                if refused is not None:
                    return refused
            try:
                return route.func(state, match, body, self.headers, dict(parse_qsl(query)))
            except HttpError as exc:
                return exc.status, exc.body, {}
            except Exception as exc:  # a bug in a route must not kill the connection silently
                return 500, {"error": f"simulator bug: {type(exc).__name__}: {exc}"}, {}
        state.record_unmatched()
        if method_allowed:
            return 405, {"error": "method not allowed"}, {}
        return 404, {"error": "not found"}, {}

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        """Write the whole response in one send, always with Content-Length."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        phrase = self.responses.get(status, ("",))[0]
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ]
        lines.extend(f"{key}: {value}" for key, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)


class _Server(ThreadingHTTPServer):
    """Thread per connection; remembers open connections so stop() really cuts them."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Shut down keep-alive connections, so a stopped simulator looks down to clients."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


class Simulator:
    """The external APIs on loopback. State survives stop()/start(), which reuse the same port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.state = SimulatorState(config, now=now)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL clients should use, e.g. http://127.0.0.1:8085."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Simulator:
        """Bind (port 0 picks a free port, then sticks to it) and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self.state)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join()

    def configure(self, **changes: Any) -> SimulatorConfig:
        """In-process equivalent of POST /_admin/config."""
        return self.state.update_config(changes)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
