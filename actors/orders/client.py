"""The external order API: place an order (idempotently) and read its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backlane import PermanentError
from backlane.clients.http import api_client, request_json
from backlane.settings import ApiSettings, env_name


@dataclass(frozen=True)
class PlacedOrder:
    external_id: str
    status: str


class OrderApiClient:
    def __init__(self, settings: ApiSettings, section: str = "orders") -> None:
        # A static api_key, or OAuth2 client credentials (BACKLANE_ORDERS__OAUTH__*).
        self._http = api_client(settings, env_name((section,)))

    def place(self, request_id: str, body: dict[str, Any]) -> PlacedOrder:
        """Place an order; calling again with the same request id returns the same order."""
        data = request_json(self._http, "POST", "/orders", json=body, headers={"Idempotency-Key": request_id})
        return _parse(data)

    def status(self, external_id: str) -> PlacedOrder:
        return _parse(request_json(self._http, "GET", f"/orders/{external_id}"))


def _parse(data: Any) -> PlacedOrder:
    if not isinstance(data, dict) or not data.get("id") or not data.get("status"):
        raise PermanentError(f"order API answered an unexpected body: {str(data)[:200]}")
    return PlacedOrder(external_id=str(data["id"]), status=str(data["status"]))
