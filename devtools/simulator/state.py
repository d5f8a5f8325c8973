"""Thread-safe state, knobs and counters of the external-API simulator.

Everything mutable lives behind one re-entrant lock: the handler threads of the
HTTP server, the admin endpoints and in-process test code all go through it, so
a decision such as "is this idempotency key new?" and the side effect that
follows are atomic. Holding one lock is cheap at the request rates we need
(~1,500/s) and makes the simulator's own behaviour beyond suspicion when a test
is checking that the *client* never duplicates a side effect.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

# Per-service state factories registered by service modules (orders.py, …), so
# a new simulated service brings its own storage and stats without editing here.
_SERVICE_STATES: dict[str, Callable[[], ServiceState]] = {}


class ServiceState(Protocol):
    """What a service module stores in the simulator: anything, plus its stats."""

    def stats(self) -> dict[str, Any]:
        """Return a JSON-able snapshot published under the service's name in /_admin/stats."""
        ...


def register_service_state(name: str, factory: Callable[[], ServiceState]) -> None:
    """Register the storage of a simulated service; created anew on every reset."""
    _SERVICE_STATES[name] = factory


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    """Validate a numeric knob, because a bad admin call should fail loudly with 400."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be within [{low}, {high if high is not None else 'inf'}]")
    return float(value)


def _whole(name: str, value: Any, low: int = 0) -> int:
    """Validate a whole-number knob."""
    number = _number(name, value, low)
    if number != int(number):
        raise ValueError(f"{name} must be an integer")
    return int(number)


@dataclass
class SimulatorConfig:
    """The knobs; every one can be changed at runtime via POST /_admin/config.

    Treated as immutable once built: updates produce a new instance, so a
    handler that read the config sees one consistent set of knobs.
    """

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    lost_response_rate: float = 0.0
    outage: list[str] = field(default_factory=list)
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    order_settle_polls: int = 1
    order_reject_rate: float = 0.0
    #: Size of the product API's (stable, deterministic) product list.
    product_count: int = 250
    #: GET /products answers 503 for this page (None: never) ...
    product_fail_page: int | None = None
    #: ... this many times, then serves it again.
    product_fail_times: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        """Validate and normalise (JSON gives lists where we keep tuples)."""
        self.latency_ms = _number("latency_ms", self.latency_ms, 0)
        for name in ("failure_rate", "lost_response_rate", "order_reject_rate"):
            setattr(self, name, _number(name, getattr(self, name), 0, 1))
        if not isinstance(self.outage, list | tuple) or not all(isinstance(s, str) for s in self.outage):
            raise ValueError("outage must be a list of service names")
        self.outage = list(self.outage)
        if not isinstance(self.rate_limits, Mapping):
            raise ValueError("rate_limits must be an object {key: [limit, window_seconds]}")
        limits: dict[str, tuple[int, float]] = {}
        for key, spec in self.rate_limits.items():
            if not isinstance(spec, list | tuple) or len(spec) != 2:
                raise ValueError(f"rate_limits[{key!r}] must be [limit, window_seconds]")
            limit = _number(f"rate_limits[{key!r}] limit", spec[0], 1)
            if limit != int(limit):
                raise ValueError(f"rate_limits[{key!r}] limit must be an integer")
            window = _number(f"rate_limits[{key!r}] window", spec[1], 0)
            if window <= 0:
                raise ValueError(f"rate_limits[{key!r}] window must be > 0")
            limits[str(key)] = (int(limit), window)
        self.rate_limits = limits
        polls = _number("order_settle_polls", self.order_settle_polls, 0)
        if polls != int(polls):
            raise ValueError("order_settle_polls must be an integer")
        self.order_settle_polls = int(polls)
        for name in ("product_count", "product_fail_times"):
            setattr(self, name, _whole(name, getattr(self, name)))
        if self.product_fail_page is not None:
            self.product_fail_page = _whole("product_fail_page", self.product_fail_page, 1)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError("seed must be an integer or null")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as returned by GET /_admin/config."""
        data = asdict(self)
        data["rate_limits"] = {k: [n, w] for k, (n, w) in self.rate_limits.items()}
        return data

    def updated(self, partial: Mapping[str, Any]) -> SimulatorConfig:
        """Return a new config with `partial` applied; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(partial) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return SimulatorConfig(**{**self.to_dict(), **partial})


class SimulatorState:
    """All mutable simulator state: config, seeded RNG, rate-limit windows, counters, services.

    Rate limits use a sliding-window log: a request is admitted when fewer than
    N admitted requests fall within the last `window` seconds of the injected
    clock; when refused, the wait is the time until the oldest of those leaves
    the window. Refused requests do not take a slot.
    """

    def __init__(self, config: SimulatorConfig | None = None, now: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()
        self.now = now
        self._initial = SimulatorConfig(**(config or SimulatorConfig()).to_dict())
        self.config = self._initial
        self.rng = random.Random(self.config.seed)
        self._clear()

    def _clear(self) -> None:
        """Drop counters, windows and service data (caller holds the lock)."""
        self.requests: dict[str, int] = {}
        self.status_codes: dict[int, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.failures: dict[str, int] = {"transient": 0, "outage": 0}
        self._windows: dict[str, deque[float]] = {}
        self.services: dict[str, ServiceState] = {name: make() for name, make in _SERVICE_STATES.items()}

    # -- knobs ---------------------------------------------------------------

    def update_config(self, partial: Mapping[str, Any]) -> SimulatorConfig:
        """Apply a partial config (raises ValueError); a new seed re-seeds the RNG."""
        with self.lock:
            self.config = self.config.updated(partial)
            if "seed" in partial:
                self.rng = random.Random(self.config.seed)
            return self.config

    def reset(self, config: bool = False) -> None:
        """Clear state and counters; with config=True also return to the constructor's config."""
        with self.lock:
            if config:
                self.config = self._initial
            self.rng = random.Random(self.config.seed)
            self._clear()

    def latency_seconds(self) -> float:
        """Current artificial latency, read under the lock like everything else."""
        with self.lock:
            return self.config.latency_ms / 1000.0

    def chance(self, probability: float) -> bool:
        """Draw from the seeded RNG; no draw at 0 so an unused knob never shifts the sequence."""
        if probability <= 0:
            return False
        with self.lock:
            return self.rng.random() < probability

    def service(self, name: str) -> Any:
        """The storage of a registered service (created lazily if registered after start)."""
        with self.lock:
            svc = self.services.get(name)
            if svc is None:
                svc = self.services[name] = _SERVICE_STATES[name]()
            return svc

    # -- request gates and counters -----------------------------------------

    def admit(
        self, route_key: str, service: str, rate_key: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Count a request and apply outage, rate limit, then transient failure.

        Returns a rejection (status, body, headers) or None when the request
        may reach its handler. All gates run before any side effect.
        """
        with self.lock:
            self.requests[route_key] = self.requests.get(route_key, 0) + 1
            cfg = self.config
            if service in cfg.outage or "*" in cfg.outage:
                self.failures["outage"] += 1
                return 503, {"error": "outage"}, {}
            if rate_key is not None:
                wait = self._take_slot(rate_key)
                if wait is not None:
                    self.rate_limited[rate_key] = self.rate_limited.get(rate_key, 0) + 1
                    shown = _format_seconds(wait)
                    body = {
                        "error": "rate_limited",
                        "message": f"wait for {shown} seconds",
                        "retry_after": wait,
                    }
                    return 429, body, {"Retry-After": str(max(1, _ceil(wait)))}
            if self.chance(cfg.failure_rate):
                self.failures["transient"] += 1
                return 503, {"error": "transient"}, {}
            return None

    def _take_slot(self, key: str) -> float | None:
        """Take a rate-limit slot, or return seconds until one frees (caller holds the lock)."""
        limit = self.config.rate_limits.get(key)
        if limit is None:
            return None
        count, window = limit
        now = self.now()
        log = self._windows.setdefault(key, deque())
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) >= count:
            return round(log[len(log) - count] + window - now, 3)
        log.append(now)
        return None

    def record_unmatched(self) -> None:
        """Count a request no route knows, so stray client URLs show up in stats."""
        with self.lock:
            self.requests["unmatched"] = self.requests.get("unmatched", 0) + 1

    def record_status(self, status: int) -> None:
        """Count a non-admin response by status code."""
        with self.lock:
            self.status_codes[status] = self.status_codes.get(status, 0) + 1

    def stats(self) -> dict[str, Any]:
        """Snapshot for GET /_admin/stats; each service adds its own section by name."""
        with self.lock:
            out: dict[str, Any] = {
                "requests": dict(self.requests),
                "status_codes": {str(code): n for code, n in sorted(self.status_codes.items())},
                "rate_limited": dict(self.rate_limited),
                "failures": dict(self.failures),
            }
            for name in _SERVICE_STATES:
                out[name] = self.service(name).stats()
            return out


def _ceil(seconds: float) -> int:
    """Round up to whole seconds for the Retry-After header."""
    whole = int(seconds)
    return whole if whole == seconds else whole + 1


def _format_seconds(seconds: float) -> str:
    """Human form for the "wait for X seconds" message: 60, 0.5, never 6e+01."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
