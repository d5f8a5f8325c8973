"""Per-item actors, one module per pipeline. Importing this package sets up the
broker and registers every pipeline, which is what ``dramatiq actors`` needs."""

from backlane.app import setup

broker = setup()

# Registration needs the broker first; one module per pipeline.
from actors import (  # noqa: E402
    catalog,
    exports,
    orders,
    staging,
    tracks,
)

__all__ = ["broker", "catalog", "exports", "orders", "staging", "tracks"]
