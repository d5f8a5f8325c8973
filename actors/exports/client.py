"""The product API: its health, and its products page by page."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backlane.clients.http import request_json, shared_client
from backlane.settings import ApiSettings
from contracts.products import ProductPage


@dataclass(frozen=True)
class Health:
    up: bool
    detail: str


def health_is_up(status: int) -> bool:
    """2xx is up; so is 401: the service answers, it only wants credentials the health check lacks."""
    return 200 <= status < 300 or status == 401


class ProductApiClient:
    def __init__(self, settings: ApiSettings) -> None:
        token = settings.api_key.get_secret_value() if settings.api_key else None
        self._http = shared_client(settings.base_url, timeout=settings.timeout, token=token)

    def health(self, timeout: float) -> Health:
        """GET /health within ``timeout`` seconds; any network error or other status is down."""
        try:
            response = self._http.get("/health", timeout=timeout)
        except httpx.HTTPError as exc:
            return Health(False, f"GET /health failed: {exc.__class__.__name__}: {exc or 'no detail'}")
        return Health(health_is_up(response.status_code), f"GET /health answered {response.status_code}")

    def page(self, page: int, page_size: int) -> ProductPage:
        data = request_json(self._http, "GET", "/products", params={"page": page, "page_size": page_size})
        return ProductPage.model_validate(data)
