"""The shared HTTP plumbing every external client uses.

One :class:`httpx.Client` per base URL and thread-safe reuse (keep-alive matters
at a thousand calls a second); responses that are errors become backlane's
classified errors right here, so callers only see success or a
:class:`~backlane.errors.BacklaneError`.

Two things httpx does on every request are skipped, because an order costs two
requests and httpx's own CPU was two thirds of a worker thread's (docs/benchmarks.md,
section 1): an API client keeps no cookies (the platform's APIs authenticate with
tokens, and an upstream cannot plant one; httpx parsed every response's headers into
an ``email.message`` for its cookie jar), and a path is joined to the base URL here,
once, where httpx parsed it and then the merged URL again.
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
#: The attribute of a shared client holding its base URL as text (ending in "/").
BASE_TEXT = "_backlane_base_text"


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: ``Set-Cookie`` from an API is ignored, unread."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def _without_cookies(client: httpx.Client) -> None:
    """httpx extracts cookies into ``client.cookies`` after every response, and its setter
    copies any jar into a plain one, so the jar is replaced where httpx keeps it
    (tests/unit/test_http_client.py fails if a new httpx keeps it elsewhere)."""
    client._cookies = NoCookies()


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
            _without_cookies(client)
            base = client.base_url
            if not base.query and not base.fragment:  # else httpx's own join, whatever it makes of one
                text = str(base)
                setattr(client, BASE_TEXT, text if text.endswith("/") else text + "/")
            _clients[key] = client
            if auth is not None:
                _auths.append(auth)
        return client


def request_json(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    """Send a request; return the decoded JSON body or raise a classified error."""
    try:
        response = client.request(method, absolute(client, url), **kwargs)
    except httpx.HTTPError as exc:
        raise classify(exc) from exc
    error = classify_response(response)
    if error is not None:
        raise error
    try:
        return response.json() if response.content else None
    except ValueError as exc:
        raise classify(exc) from exc


def absolute(client: httpx.Client, url: str) -> str:
    """``url`` joined to a shared client's base URL as httpx joins it (the base's path, then
    the path without its leading "/"); anything but a path starting with one "/" as given."""
    base = getattr(client, BASE_TEXT, None)
    if base is None or not isinstance(url, str) or not url.startswith("/") or url.startswith("//"):
        return url
    return base + url[1:]


def api_client(settings: ApiSettings, setting: str, *, base_url: str | None = None) -> httpx.Client:
    """The pooled client of an :class:`~backlane.settings.ApiSettings` section: its static
    ``api_key`` or its ``oauth`` client credentials (``setting`` names the section's variables,
    e.g. ``BACKLANE_ORDERS``, for the one-line errors)."""
    from backlane.clients.auth import client_credentials

    token = settings.api_key.get_secret_value() if settings.api_key else None
    auth = client_credentials(settings.oauth, f"{setting}__OAUTH")
    return shared_client(base_url or settings.base_url, timeout=settings.timeout, token=token, auth=auth)
