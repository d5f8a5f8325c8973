"""The discover actors and their cron schedules, read from settings.

``periodiq scheduler`` runs the one clock; workers run ``dramatiq actors
scheduler`` so they can execute the discover actors the clock sends.
"""

from actors import broker
from backlane.core.discovery import declare_discover_actors
from backlane.core.registry import REGISTRY

discover_actors = declare_discover_actors(REGISTRY)

__all__ = ["broker", "discover_actors"]
