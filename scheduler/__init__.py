"""The discover actors and their cron schedules, read from settings.

``periodiq scheduler`` runs the one clock; workers run ``dramatiq actors
scheduler`` so they can execute the discover actors the clock sends. Importing
this module also gives periodiq backlane's scheduler (:mod:`backlane.core.ticks`):
the clock waits out a RabbitMQ outage, runs the ticks it missed, and stops at
once, in one line, when RabbitMQ refuses its credentials.
"""

from actors import broker
from backlane.core import ticks
from backlane.core.discovery import declare_discover_actors
from backlane.core.registry import REGISTRY

ticks.install()
discover_actors = declare_discover_actors(REGISTRY)

__all__ = ["broker", "discover_actors"]
