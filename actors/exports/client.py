"""The product API: its health, and its products page by page."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backlane.clients.http import api_client, request_json
from backlane.settings import ApiSettings, env_name
from contracts.products import ProductPage


@dataclass(frozen=True)
class Health:
    up: bool
    detail: str


def health_is_up(status: int) -> bool:
    """2xx is up; so is 401: the service answers, it only wants credentials the health check lacks."""
    return 200 <= status < 300 or status == 401


class ProductApiClient:
    def __init__(self, settings: ApiSettings, section: str = "exports") -> None:
        # A static api_key, or OAuth2 client credentials (BACKLANE_EXPORTS__OAUTH__*).
        self._http = api_client(settings, env_name((section,)))

    def health(self, timeout: float) -> Health:
        """GET /health within ``timeout`` seconds; any network error or other status is down.
        Sent without an OAuth token, as the export worker's own check: an API behind an identity
        server answers it 401, which is up; an identity server down does not make the API down."""
        try:
            response = self._http.get("/health", timeout=timeout, auth=None)
        except httpx.HTTPError as exc:
            return Health(False, f"GET /health failed: {exc.__class__.__name__}: {exc or 'no detail'}")
        return Health(health_is_up(response.status_code), f"GET /health answered {response.status_code}")

    def page(self, page: int, page_size: int) -> ProductPage:
        data = request_json(self._http, "GET", "/products", params={"page": page, "page_size": page_size})
        return ProductPage.model_validate(data)
