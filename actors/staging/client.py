"""Vendor scraper APIs: hand one staging batch to a vendor's scraper."""

from __future__ import annotations

from typing import Any

from backlane import PermanentError
from backlane.clients.auth import client_credentials
from backlane.clients.http import request_json, shared_client
from backlane.settings import OAuthSettings, env_name


class VendorScraperClient:
    def __init__(
        self, base_url: str, *, timeout: float, oauth: OAuthSettings | None = None, section: str = "staging"
    ) -> None:
        auth = client_credentials(oauth, env_name((section, "oauth"))) if oauth is not None else None
        self._http = shared_client(base_url, timeout=timeout, auth=auth)

    def scrape(self, vendor: str, key: str, payload: dict[str, Any]) -> int:
        """Scrape a batch (``key`` makes a repeat harmless); returns how many records it yielded."""
        data = request_json(
            self._http, "POST", f"/vendors/{vendor}/scrape", json=payload, headers={"Idempotency-Key": key}
        )
        if not isinstance(data, dict) or not isinstance(data.get("records"), int):
            raise PermanentError(f"vendor {vendor} answered an unexpected body: {str(data)[:200]}")
        return int(data["records"])
