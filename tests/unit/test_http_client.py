"""The shared API client: a path joined to the base URL exactly as httpx would join it, and no
cookies kept (a real HTTP server on loopback sets one and reports what it is sent)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backlane.clients.http import NoCookies, absolute, request_json, shared_client

BASES = (
    "http://127.0.0.1:9",
    "http://127.0.0.1:9/",
    "http://127.0.0.1:9/api",
    "https://api.example.test/v2/",
    "http://127.0.0.1:9/api?key=1",  # a query in the base: httpx joins it
)
PATHS = (
    "/orders",
    "/orders/ab12?x=1&y=%C3%A9",
    "/orders/a b/é",
    "/a/../b",
    "/",
    "//other.example/x",  # a network-path reference: left to httpx
    "http://other.example/x",  # absolute: as given
    "orders",  # relative without a slash: left to httpx
)


@pytest.mark.parametrize("base", BASES)
def test_a_path_is_joined_to_the_base_url_as_httpx_joins_it(base: str) -> None:
    client = shared_client(base, timeout=1.0)
    plain = httpx.Client(base_url=base)
    for path in PATHS:
        assert client.build_request("GET", absolute(client, path)).url == plain.build_request("GET", path).url, path
    plain.close()


def test_a_client_not_made_by_shared_client_gets_the_url_unchanged() -> None:
    with httpx.Client(base_url="http://127.0.0.1:9/api") as client:
        assert absolute(client, "/orders") == "/orders"


class _CookieSetter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"cookie": self.headers["Cookie"]}).encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "session=planted; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def cookie_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_api_client_keeps_no_cookie_an_upstream_sets(cookie_server: str) -> None:
    client = shared_client(cookie_server, timeout=5.0)
    assert isinstance(client.cookies, NoCookies), "httpx keeps its cookie jar elsewhere now: see _without_cookies"
    assert request_json(client, "GET", "/first") == {"cookie": None}
    assert request_json(client, "GET", "/second") == {"cookie": None}, "the planted cookie was sent back"
    assert len(client.cookies.jar) == 0
    with httpx.Client(base_url=cookie_server) as plain:  # what httpx does by itself, so the test can fail
        plain.get("/first")
        assert plain.get("/second").json() == {"cookie": "session=planted"}
