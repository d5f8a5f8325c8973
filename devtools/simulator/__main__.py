"""Run the simulator in the foreground: `python -m devtools.simulator --port 8085`.

Used by the demo and compose.yaml. It prints one "listening" line (flushed, so
a parent process can wait for it) and exits with code 0 on SIGTERM or SIGINT,
so stopping it is a normal event, not a failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from devtools.simulator import Simulator, SimulatorConfig, identity


def _rate_limit(text: str) -> tuple[str, tuple[int, float]]:
    """Parse KEY=N/SECONDS, e.g. catalog=2/3600."""
    try:
        key, spec = text.split("=", 1)
        count, window = spec.split("/", 1)
        return key, (int(count), float(window))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEY=N/SECONDS, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--lost-response-rate", type=float, default=0.0)
    parser.add_argument("--order-settle-polls", type=int, default=1)
    parser.add_argument("--order-reject-rate", type=float, default=0.0)
    parser.add_argument("--outage", action="append", default=[], metavar="SERVICE")
    parser.add_argument("--rate-limit", action="append", default=[], type=_rate_limit, metavar="KEY=N/SECONDS")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--require-token",
        action="append",
        default=[],
        type=_required_scope,
        metavar="SERVICE=SCOPE",
        help="the service's routes want a bearer token with SCOPE from /connect/token (e.g. orders=orders.api)",
    )
    parser.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS", help="tokens' lifetime")
    return parser


def _required_scope(text: str) -> tuple[str, str]:
    """Parse SERVICE=SCOPE, e.g. orders=orders.api."""
    service, sep, scope = text.partition("=")
    if not sep or not service or not scope:
        raise argparse.ArgumentTypeError(f"expected SERVICE=SCOPE, got {text!r}")
    return service, scope


def _clock() -> Callable[[], float]:
    """Rate-limit windows follow the shared test clock when BACKLANE_CLOCK_FILE names one,
    so moving time forward for the workers moves it for the simulator too."""
    if not os.environ.get("BACKLANE_CLOCK_FILE"):
        return time.monotonic
    from backlane.core.clock import default_clock

    clock = default_clock()
    return lambda: clock.now().timestamp()


def main(argv: list[str] | None = None) -> int:
    """Start, announce, wait for a signal, stop cleanly."""
    args = _parser().parse_args(argv)
    try:
        config = SimulatorConfig(
            latency_ms=args.latency_ms,
            failure_rate=args.failure_rate,
            lost_response_rate=args.lost_response_rate,
            outage=args.outage,
            rate_limits=dict(args.rate_limit),
            order_settle_polls=args.order_settle_polls,
            order_reject_rate=args.order_reject_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    simulator = Simulator(args.host, args.port, config, now=_clock())
    try:
        identity.configure(
            simulator.state, required=dict(args.require_token), token_lifetime_seconds=args.token_lifetime
        )
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    simulator.start()
    print(f"simulator listening on {simulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
