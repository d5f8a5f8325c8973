"""Local simulators of the external APIs (order provider, later catalog/products/vendors).

A real HTTP server on loopback with knobs for latency, transient failures,
lost responses, outages and rate limits, so demos and tests drive the real
HTTP clients against misbehaving servers. Importing the package registers the
built-in service modules' routes, as importing `actors` registers actors.
"""

from __future__ import annotations

from devtools.simulator import (
    catalog,  # noqa: F401  (registers the catalog sources' routes)
    embeddings,  # noqa: F401  (registers the embeddings APIs' routes)
    identity,  # noqa: F401  (registers the token endpoint and the bearer-token guard)
    orders,  # noqa: F401  (registers the order routes)
    products,  # noqa: F401  (registers the product API routes)
    vendors,  # noqa: F401  (registers the vendor scraper routes)
)
from devtools.simulator.server import HttpError, Simulator, json_object, register_route, unregister_route
from devtools.simulator.state import SimulatorConfig, SimulatorState, register_service_state

__all__ = [
    "HttpError",
    "Simulator",
    "SimulatorConfig",
    "SimulatorState",
    "json_object",
    "register_route",
    "register_service_state",
    "unregister_route",
]
