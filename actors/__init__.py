"""Per-item actors, one module per pipeline. Importing this package sets up the
broker and registers every pipeline, which is what ``dramatiq actors`` needs."""

from backlane.core.runtime import setup_broker

broker = setup_broker()

# Registration needs the broker first; one module per pipeline.
from actors import (  # noqa: E402
    catalog,
    exports,
    orders,
    staging,
    tracks,
)

__all__ = ["broker", "catalog", "exports", "orders", "staging", "tracks"]
