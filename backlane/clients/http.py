"""The shared HTTP plumbing every external client uses.

One :class:`httpx.Client` per base URL and thread-safe reuse (keep-alive matters
at a thousand calls a second); responses that are errors become backlane's
classified errors right here, so callers only see success or a
:class:`~backlane.errors.BacklaneError`.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from backlane.errors import classify, classify_response
from backlane.settings import ApiSettings

_clients: dict[tuple[str, float, str | None, int], httpx.Client] = {}
_lock = threading.Lock()
#: Keeps every auth flow a client was made with alive, so its id() in a key is never reused.
_auths: list[httpx.Auth] = []


def shared_client(
    base_url: str, *, timeout: float, token: str | None = None, auth: httpx.Auth | None = None
) -> httpx.Client:
    """A pooled client for ``base_url`` (httpx clients are thread-safe): a static bearer ``token``,
    or an ``auth`` flow such as :func:`backlane.clients.auth.client_credentials`' (OAuth2)."""
    key = (base_url, timeout, token, id(auth) if auth is not None else 0)
    with _lock:
        client = _clients.get(key)
        if client is None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = httpx.Client(
                base_url=base_url,
                timeout=timeout,
                headers=headers,
                auth=auth,
                # No cap: a thread holds one connection at a time, so a process opens at most as
                # many as it has threads, and keeps them (a cap below the thread count closed and
                # reopened connections on every request beyond it; a slow API needs many threads).
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            )
            _clients[key] = client
            if auth is not None:
                _auths.append(auth)
        return client


def request_json(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    """Send a request; return the decoded JSON body or raise a classified error."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise classify(exc) from exc
    error = classify_response(response)
    if error is not None:
        raise error
    try:
        return response.json() if response.content else None
    except ValueError as exc:
        raise classify(exc) from exc


def api_client(settings: ApiSettings, setting: str, *, base_url: str | None = None) -> httpx.Client:
    """The pooled client of an :class:`~backlane.settings.ApiSettings` section: its static
    ``api_key`` or its ``oauth`` client credentials (``setting`` names the section's variables,
    e.g. ``BACKLANE_ORDERS``, for the one-line errors)."""
    from backlane.clients.auth import client_credentials

    token = settings.api_key.get_secret_value() if settings.api_key else None
    auth = client_credentials(settings.oauth, f"{setting}__OAUTH")
    return shared_client(base_url or settings.base_url, timeout=settings.timeout, token=token, auth=auth)
