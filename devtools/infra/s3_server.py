"""The S3-speaking server of the tests and the demo: moto's S3 (its server mode) behind a fault knob.

Run as ``python -m devtools.infra.s3_server --host 127.0.0.1 --port N``. It answers the real
S3 REST API (SigV4 checked once auth is on, ListObjectsV2 with continuation tokens, S3's
XML errors) through moto's WSGI application, in one process on loopback. One path of its
own, like the simulators' knobs, makes it misbehave on purpose:

``POST /_backlane/throttle`` with JSON ``{"count": 3, "match": "audio/", "retry_after": 2}``:
the next ``count`` requests whose path contains ``match`` answer ``503 SlowDown`` (with
``Retry-After`` when ``retry_after`` is given), as S3 does under load. ``{"count": 0}`` stops it.
``GET /_backlane/throttle`` says how many are left and how many were answered so.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

THROTTLE_PATH = "/_backlane/throttle"
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.match = ""
        self.retry_after: float | None = None
        self.throttled = 0

    def take(self, path: str) -> bool:
        with self.lock:
            if self.count > 0 and self.match in path:
                self.count -= 1
                self.throttled += 1
                return True
            return False


def wrap(app: Callable[..., Iterable[bytes]], faults: Faults) -> Callable[..., Iterable[bytes]]:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == THROTTLE_PATH:
            if environ.get("REQUEST_METHOD") == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(min(length, 10_000)) or b"{}")
                with faults.lock:
                    faults.count = int(body.get("count", 0))
                    faults.match = str(body.get("match", ""))
                    retry_after = body.get("retry_after")
                    faults.retry_after = float(retry_after) if retry_after is not None else None
                    faults.throttled = 0 if body.get("reset", True) else faults.throttled
            with faults.lock:
                answer = json.dumps({"left": faults.count, "throttled": faults.throttled}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
            return [answer]
        if faults.take(path):
            headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(SLOW_DOWN)))]
            if faults.retry_after is not None:
                headers.append(("Retry-After", f"{faults.retry_after:g}"))
            start_response("503 Slow Down", headers)
            return [SLOW_DOWN]
        return app(environ, start_response)

    return application


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = wrap(DomainDispatcherApplication(create_backend_app), Faults())
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"s3 server on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
