"""OAuth2 client credentials (RFC 6749 section 4.4) for every external API client.

:func:`client_credentials` gives the one :class:`ClientCredentials` of a process for a set of
:class:`~backlane.settings.OAuthSettings`: an :class:`httpx.Auth` that puts a bearer token on
every request. Its token is

* fetched once and shared by every thread of the process: one lock, so when many threads find
  it missing or due at once a single token request goes out and the others use its answer
  (single flight; a failed request is not repeated by the threads that waited for it either,
  while a thread that comes after it tries again);
* renewed ``renew_margin_seconds`` before it expires (at most half its lifetime), measured on a
  monotonic clock from the moment the request was sent;
* renewed once when the API answers 401 (the token was revoked or the identity server restarted);
  a second 401 to a fresh token is :class:`~backlane.errors.CredentialsRejected` naming the scope;
* never logged: it and the client secret appear in no log line, exception or repr.

The token endpoint unreachable, timing out or answering 5xx/429 is a
:class:`~backlane.errors.TransientError` (or :class:`~backlane.errors.RateLimited`): the item
retries with backoff and a pipeline's breaker counts it like the API's own failures. The
endpoint refusing the client (``invalid_client``, ``invalid_scope``, ``unauthorized_client``,
any other 4xx) is :class:`~backlane.errors.CredentialsRejected`, one line naming the settings
(``BACKLANE_ORDERS__OAUTH__CLIENT_ID`` ...).

Why our own ~200 lines and not authlib or httpx-auth: authlib's sync httpx ``OAuth2Client`` has
no lock around its token renewal (two threads renew twice), is a client rather than an
``httpx.Auth`` for our shared pooled clients, and raises its own ``OAuthError``; httpx-auth's
``OAuth2ClientCredentials`` is thread-safe but keeps a wall-clock cache of its own (no injected
clock, so renewal cannot be tested without waiting), does not renew on a 401, and raises its own
exceptions carrying the endpoint's reply. Both would need the same wrapping to classify errors
and name settings; the grant itself is one form POST.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from backlane.errors import (
    BacklaneError,
    CredentialsRejected,
    RateLimited,
    TransientError,
    named_cause,
    redact_url,
    retry_after_seconds,
)
from backlane.settings import OAuthSettings

#: A token's lifetime as the identity server names it is bounded to this range, seconds: a
#: hostile or broken ``expires_in`` (0, -1, 1e308, "soon") neither loops nor holds for ever.
MIN_LIFETIME_SECONDS = 1.0
MAX_LIFETIME_SECONDS = 24 * 3600.0
#: ``expires_in`` is only RECOMMENDED by RFC 6749; a token without one is used this long.
DEFAULT_LIFETIME_SECONDS = 300.0
#: Largest token endpoint reply read, bytes.
MAX_REPLY_BYTES = 64 * 1024
#: An access token is printable ASCII without spaces (RFC 6750 b64token is stricter).
_TOKEN = re.compile(r"^[\x21-\x7e]{1,16384}$")
#: An RFC 6749 error code: printable ASCII without quote or backslash.
_ERROR_CODE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$")


@dataclass(frozen=True, repr=False)
class _Token:
    value: str
    renew_at: float  # monotonic seconds

    def __repr__(self) -> str:
        return "<access token ***>"


class ClientCredentials(httpx.Auth):
    """Bearer tokens from one token endpoint for one client, shared by every thread."""

    def __init__(
        self,
        config: OAuthSettings,
        setting: str,
        *,
        now: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if config.token_url is None or config.client_id is None or config.client_secret is None:
            raise ValueError("ClientCredentials needs oauth.token_url, client_id and client_secret")
        #: The settings' variable prefix, e.g. ``BACKLANE_ORDERS__OAUTH``: what an error names.
        self.setting = setting
        self.token_url = config.token_url
        self.client_id = config.client_id
        self._secret = config.client_secret
        self._scope = config.scope.strip()
        self._method = config.auth_method
        self._margin = config.renew_margin_seconds
        self._now = now
        self._http = httpx.Client(timeout=config.timeout, transport=transport, follow_redirects=False)
        self._lock = threading.Lock()
        self._token: _Token | None = None
        #: Token requests finished so far, and the last one's error with its number: a thread that
        #: was waiting while a request failed takes its error instead of sending one more.
        self._finished = 0
        self._failure: tuple[int, BacklaneError] | None = None
        #: Token requests this process sent (tests and the demo read it).
        self.requests = 0

    def __repr__(self) -> str:
        return f"ClientCredentials({redact_url(self.token_url)!r}, client_id={self.client_id!r})"

    # -- httpx.Auth ------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code != 401:
            return
        fresh = self.token(stale=token)
        request.headers["Authorization"] = f"Bearer {fresh.value}"
        response = yield request
        if response.status_code == 401:
            raise CredentialsRejected(
                f"{request.method} {request.url.path} answered 401 to a fresh token of client "
                f"{self.client_id!r} from {redact_url(self.token_url)}: check {self.setting}__SCOPE "
                f"({self._scope or 'unset'}) and that the API accepts tokens of this identity server"
            )

    # -- the token -------------------------------------------------------------

    def token(self, stale: _Token | None = None) -> _Token:
        """The current token, fetched when missing, due for renewal or equal to ``stale`` (the one
        an API just refused). One request at a time; the threads waiting for it use its answer."""
        finished_before = self._finished  # read before waiting for the lock
        with self._lock:
            current = self._token
            if current is not None and current is not stale and self._now() < current.renew_at:
                return current
            if self._failure is not None and self._failure[0] > finished_before:
                raise self._failure[1]  # it failed while this thread waited: single flight for errors too
            try:
                self._token = self._fetch()
            except BacklaneError as exc:
                self._token = None
                self._failure = (self._finished + 1, exc)
                raise
            finally:
                self._finished += 1
            self._failure = None
            return self._token

    def _fetch(self) -> _Token:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        auth: Any = None
        if self._method == "basic":
            auth = httpx.BasicAuth(self.client_id, self._secret.get_secret_value())
        else:
            form.update(client_id=self.client_id, client_secret=self._secret.get_secret_value())
        where = redact_url(self.token_url)
        self.requests += 1
        sent = self._now()
        try:
            response = self._http.post(self.token_url, data=form, auth=auth, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TransientError(f"token endpoint {where} unreachable: {named_cause(exc)}") from None
        return self._read(response, sent, where)

    def _read(self, response: httpx.Response, sent: float, where: str) -> _Token:
        status = response.status_code
        body = _json_object(response.content[:MAX_REPLY_BYTES])
        if status == 429 or status == 503:
            delay = retry_after_seconds(response)
            if delay is not None or status == 429:
                raise RateLimited(f"token endpoint {where} answered {status}", delay if delay is not None else 60.0)
        if status >= 500 or status in (408, 425):
            raise TransientError(f"token endpoint {where} answered {status}")
        if status in (404, 405) or 300 <= status < 400:
            raise CredentialsRejected(
                f"token endpoint {where} answered {status}: is {self.setting}__TOKEN_URL the identity server's "
                "token endpoint (e.g. https://identity.example.com/connect/token)?"
            )
        if status >= 400:
            raise self._rejected(status, body, where)
        if status != 200 or body is None:
            raise TransientError(f"token endpoint {where} answered {status} without a JSON token reply")
        value = body.get("access_token")
        kind = body.get("token_type")
        if not isinstance(value, str) or not _TOKEN.match(value):
            raise TransientError(f"token endpoint {where} answered without a usable access_token")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise TransientError(f"token endpoint {where} answered a token of type {_code(kind)!r}, not Bearer")
        lifetime = _lifetime(body.get("expires_in"))
        margin = min(self._margin, lifetime / 2)
        return _Token(value, sent + lifetime - margin)

    def _rejected(self, status: int, body: dict[str, Any] | None, where: str) -> CredentialsRejected:
        code = _code(body.get("error") if body else None) or f"HTTP {status}"
        if code == "invalid_scope":
            fix = f"check {self.setting}__SCOPE ({self._scope or 'unset'})"
        elif code == "unsupported_grant_type":
            fix = f"the identity server must allow the client_credentials grant for client {self.client_id!r}"
        else:
            fix = f"check {self.setting}__CLIENT_ID and {self.setting}__CLIENT_SECRET"
            if code not in ("invalid_client", "unauthorized_client", "invalid_grant"):
                fix += f" (and {self.setting}__AUTH_METHOD, {self._method})"
        return CredentialsRejected(
            f"token endpoint {where} refused client {self.client_id!r} ({code}, {status}): {fix}"
        )

    def close(self) -> None:
        self._http.close()


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(content) if content else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _code(value: Any) -> str:
    """An error code or token type fit to print (anything else prints as nothing)."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else ""


def _lifetime(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return DEFAULT_LIFETIME_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_LIFETIME_SECONDS
    if seconds != seconds:  # NaN
        return DEFAULT_LIFETIME_SECONDS
    return min(max(seconds, MIN_LIFETIME_SECONDS), MAX_LIFETIME_SECONDS)


_shared: dict[tuple[Any, ...], ClientCredentials] = {}
_shared_lock = threading.Lock()


def client_credentials(config: OAuthSettings, setting: str) -> ClientCredentials | None:
    """The process's one :class:`ClientCredentials` for these settings (None when ``token_url`` is
    unset): every client, thread and settings copy with the same values shares its token."""
    if not config.enabled:
        return None
    secret = config.client_secret.get_secret_value() if config.client_secret else ""
    key = (
        config.token_url,
        config.client_id,
        secret,
        config.scope.strip(),
        config.auth_method,
        config.renew_margin_seconds,
        config.timeout,
    )
    with _shared_lock:
        auth = _shared.get(key)
        if auth is None:
            auth = _shared[key] = ClientCredentials(config, setting)
        return auth
