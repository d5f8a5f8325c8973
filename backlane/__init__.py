"""backlane: scheduled discovery and per-item background work on Dramatiq and RabbitMQ."""

__version__ = "0.1.0"
