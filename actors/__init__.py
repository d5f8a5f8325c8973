"""Per-item actors, one module per pipeline. Importing this package sets up the
broker and registers every pipeline, which is what ``dramatiq actors`` needs."""

from backlane.runtime import setup_broker

broker = setup_broker()

from actors import orders  # noqa: E402  (registration needs the broker first)

__all__ = ["broker", "orders"]
