"""``backlane dashboard``: serve the dashboard with uvicorn until Ctrl-C.

Refuses to start (exit status 78, one line) on an address reachable from other hosts
without ``BACKLANE_DASHBOARD__PASSWORD``; a port already taken is one line too (status 1).
The socket is bound here, before uvicorn starts, so either failure is said plainly.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING

from backlane.errors import Problem
from backlane.operations.dashboard.security import bind_problem
from backlane.problems import EXIT_UNAVAILABLE, EXIT_USAGE

if TYPE_CHECKING:
    from backlane.app import App
    from backlane.settings import DashboardSettings

logger = logging.getLogger("backlane.dashboard")


def missing_extra() -> Problem | None:
    """The line to say when the ``dashboard`` extra is not installed."""
    try:
        import jinja2  # noqa: F401
        import multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return Problem(
            f"the dashboard needs its extra ({exc.name} is missing): pip install 'backlane[dashboard]'", EXIT_USAGE
        )
    return None


def bind(settings: DashboardSettings) -> socket.socket:
    """A listening socket on the dashboard's address, or a :class:`Problem` saying why not."""
    refused = bind_problem(settings)
    if refused is not None:
        raise refused
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host.strip("[]"), settings.port))
    except OSError as exc:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            raise Problem(
                f"the dashboard cannot listen on {where}: the port is taken (another dashboard?); "
                "set BACKLANE_DASHBOARD__PORT",
                EXIT_UNAVAILABLE,
            ) from None
        raise Problem(
            f"the dashboard cannot listen on {where} ({exc.strerror or exc}): fix BACKLANE_DASHBOARD__HOST",
            EXIT_USAGE,
        ) from None
    sock.listen(128)
    return sock


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def url_of(settings: DashboardSettings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"


def serve(app: App, settings: DashboardSettings) -> int:
    """Serve until Ctrl-C (which ends the command with status 130) or SIGTERM (status 0)."""
    problem = missing_extra()
    if problem is not None:
        raise problem
    import uvicorn

    from backlane.operations.dashboard.web import create_app

    sock = bind(settings)
    # The lifespan starts the charts' sampler with the server (history from the start, not the first view).
    # In JSON, uvicorn's loggers keep no text handlers of their own: their lines reach the command's.
    log_config = None if app.runtime.settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    web = create_app(app, settings)
    config = uvicorn.Config(web, log_level="warning", access_log=False, lifespan="on", log_config=log_config)
    server = uvicorn.Server(config)
    read_only = " (read-only)" if settings.read_only else ""
    login = f", login {settings.user}" if settings.password is not None else ""
    print(f"dashboard on {url_of(settings)}{read_only}{login}; Ctrl-C to stop", flush=True)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again: Ctrl-C reaches
    # the command as KeyboardInterrupt (status 130), SIGTERM as this handler (status 0).
    signal.signal(signal.SIGTERM, _terminated)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return 0
