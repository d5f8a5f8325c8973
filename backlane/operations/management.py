"""A small client of the RabbitMQ management HTTP API: queue depths for status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from backlane.settings import BrokerSettings


@dataclass(frozen=True)
class QueueDepth:
    ready: int
    unacked: int
    consumers: int


class ManagementClient:
    def __init__(self, settings: BrokerSettings, vhost: str = "/", timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=settings.management_url,
            auth=(settings.management_user, settings.management_password.get_secret_value()),
            timeout=timeout,
        )
        self.vhost = quote(vhost, safe="")

    def queues(self) -> dict[str, QueueDepth]:
        """Every queue of the vhost by name (one request, whatever the number of queues)."""
        response = self._http.get(
            f"/api/queues/{self.vhost}", params={"columns": "name,messages_ready,messages_unacknowledged,consumers"}
        )
        response.raise_for_status()
        return {q["name"]: _depth(q) for q in response.json()}

    def close(self) -> None:
        self._http.close()


def _depth(queue: dict[str, Any]) -> QueueDepth:
    return QueueDepth(
        ready=int(queue.get("messages_ready") or 0),
        unacked=int(queue.get("messages_unacknowledged") or 0),
        consumers=int(queue.get("consumers") or 0),
    )
