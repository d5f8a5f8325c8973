"""A simulated IdentityServer (service "identity"): ``POST /connect/token`` and bearer tokens.

The token endpoint speaks OAuth2's client credentials grant as IdentityServer does: a
form-encoded ``grant_type=client_credentials`` (and ``scope``), the client authenticated with
HTTP Basic (client_secret_basic, id and secret form-encoded first as RFC 6749 2.3.1 says) or in
the form (client_secret_post); it answers ``{"access_token", "expires_in", "token_type":
"Bearer", "scope"}`` with a JWT (HS256, ``typ: at+jwt``) carrying ``iss``, ``nbf``, ``iat``,
``exp``, ``client_id``, ``scope`` (a list, as IdentityServer writes it) and ``jti``; and errors in
RFC 6749 5.2 JSON: ``invalid_request``, ``invalid_client`` (401 with ``WWW-Authenticate: Basic``
when the client used Basic, else 400), ``unsupported_grant_type``, ``invalid_scope``.

With ``required`` naming a service's scope (``configure(sim, required={"orders": "orders.api"})``,
or ``POST /_admin/identity``), every route of that service wants a valid, unexpired token with
that scope and answers 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` (or
``insufficient_scope``) otherwise. Its ``/health`` too: the product API's health check, which
sends no token, counts that 401 as up.

Time: tokens live ``token_lifetime_seconds`` (1 hour by default); tests use a few seconds and a
client renewal margin below it, so a run crosses several expiries in seconds. ``clock_offset_seconds``
moves this server's clock forward (a token expires at once, as if its hour had passed).

stats["identity"] counts token requests and tokens issued per client, refusals by error, and the
API's refusals by cause; :func:`issued_tokens` gives the tokens themselves to in-process tests
(never in stats: a test greps logs for them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from devtools.simulator.server import HttpError, Reply, Route, register_admin_route, register_guard, register_route
from devtools.simulator.state import SimulatorState, register_service_state

#: The client the demo and the tests use unless they configure others, and its secret.
DEMO_CLIENT_ID = "backlane"
DEMO_CLIENT_SECRET = "backlane-demo-secret"
#: The scopes of every API the simulator serves.
SCOPES = ("orders.api", "products.api", "catalog.api", "vendors.api")
ISSUER = "https://identity.simulator"
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class IdentityClient:
    secret: str
    scopes: tuple[str, ...] = SCOPES


@dataclass
class IdentityState:
    """The identity server's clients, knobs and counters (reset with the simulator)."""

    clients: dict[str, IdentityClient] = field(
        default_factory=lambda: {DEMO_CLIENT_ID: IdentityClient(DEMO_CLIENT_SECRET)}
    )
    token_lifetime_seconds: int = 3600
    #: service -> the scope its routes want ("*": every service but this one).
    required: dict[str, str] = field(default_factory=dict)
    clock_offset_seconds: float = 0.0
    wall: Callable[[], float] = time.time
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    token_requests: dict[str, int] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)
    #: Per client, the (wall-clock) times its tokens were issued.
    issued_at: dict[str, list[float]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    api_refusals: dict[str, int] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)

    def now(self) -> float:
        return self.wall() + self.clock_offset_seconds

    def stats(self) -> dict[str, Any]:
        return {
            "token_requests": dict(self.token_requests),
            "issued": dict(self.issued),
            "issued_at": {client: list(times) for client, times in self.issued_at.items()},
            "refused": dict(self.refused),
            "api_refusals": dict(self.api_refusals),
            "token_lifetime_seconds": self.token_lifetime_seconds,
            "required": dict(self.required),
            "clock_offset_seconds": self.clock_offset_seconds,
        }


register_service_state("identity", IdentityState)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def verify(key: bytes, token: str) -> dict[str, Any] | None:
    """The claims of a token this server signed, or None (any other string, forged or mangled)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        return None
    try:
        expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(parts[2])):
            return None
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> Reply:
    return status, {"error": code, "error_description": description}, {**_NO_STORE, **(headers or {})}


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, {"error": "invalid_request", "error_description": "the body is not a form"}) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise HttpError(400, {"error": "invalid_request", "error_description": f"{name} given twice"})
        form[name] = value
    return form


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, {"error": "invalid_request", "error_description": "malformed Basic credentials"}) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise HttpError(400, {"error": "invalid_request", "error_description": "malformed Basic credentials"})
    return unquote_plus(client_id), unquote_plus(secret)


def token(state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]) -> Reply:
    """POST /connect/token: the client credentials grant. Every request is counted under the
    client it names (Basic first, else the form; "" when it names none), malformed ones too."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    problem: str | None = None
    try:
        basic = _basic(headers.get("Authorization") or "")
        form = _form(body) if content_type == _FORM else {}
    except HttpError as exc:
        basic, form, problem = None, {}, str(exc.body["error_description"])
    if problem is None and content_type != _FORM:
        problem = f"Content-Type must be {_FORM}"
    if problem is None and basic is not None and ("client_id" in form or "client_secret" in form):
        problem = "the client authenticated twice (Basic and the form)"
    client_id, secret = basic if basic is not None else (form.get("client_id", ""), form.get("client_secret", ""))
    with state.lock:
        store: IdentityState = state.service("identity")
        store.token_requests[client_id] = store.token_requests.get(client_id, 0) + 1
        client = store.clients.get(client_id)
        lifetime = store.token_lifetime_seconds
        key = store.key
        now = store.now()

        def refuse(status: int, code: str, description: str, extra: dict[str, str] | None = None) -> Reply:
            store.refused[code] = store.refused.get(code, 0) + 1
            return _error(status, code, description, extra)

        if problem is not None:
            return refuse(400, "invalid_request", problem)

        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            if basic is not None:
                return refuse(401, "invalid_client", "unknown client or wrong secret", {"WWW-Authenticate": "Basic"})
            return refuse(400, "invalid_client", "unknown client or wrong secret")
        grant = form.get("grant_type")
        if not grant:
            return refuse(400, "invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            return refuse(400, "unsupported_grant_type", f"grant_type {grant[:40]!r} is not supported")
        asked = form.get("scope", "").split()
        scopes = tuple(asked) if asked else client.scopes
        if not set(scopes) <= set(client.scopes):
            return refuse(400, "invalid_scope", "the client may not ask for this scope")
        claims = {
            "iss": ISSUER,
            "nbf": int(now),
            "iat": int(now),
            # Whole seconds as IdentityServer writes them, rounded up: an API accepts a token up to a
            # second past its expires_in (ASP.NET's JwtBearer allows 5 minutes of clock skew).
            "exp": math.ceil(now + lifetime),
            "client_id": client_id,
            "scope": list(scopes),
            "jti": secrets.token_hex(16),
        }
        access_token = _sign(key, claims)
        store.issued[client_id] = store.issued.get(client_id, 0) + 1
        store.issued_at.setdefault(client_id, []).append(now)
        store.tokens.append(access_token)
    reply = {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer", "scope": " ".join(scopes)}
    return 200, reply, dict(_NO_STORE)


def require_token(state: SimulatorState, route: Route, headers: Any) -> Reply | None:
    """The guard: a service named in ``required`` wants a valid bearer token with its scope."""
    if route.service == "identity":
        return None
    with state.lock:
        store: IdentityState = state.service("identity")
        scope = store.required.get(route.service) or store.required.get("*")
        if scope is None:
            return None
        key, now = store.key, store.now()

        def refuse(cause: str, challenge: str, message: str) -> Reply:
            store.api_refusals[cause] = store.api_refusals.get(cause, 0) + 1
            return 401, {"error": cause, "message": message}, {"WWW-Authenticate": challenge}

        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return refuse("missing", 'Bearer realm="simulator"', "a bearer token is required")
        claims = verify(key, value.strip())
        if claims is None:
            return refuse("invalid", 'Bearer error="invalid_token", error_description="invalid"', "invalid token")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or now >= exp:
            return refuse("expired", 'Bearer error="invalid_token", error_description="expired"', "token expired")
        granted = claims.get("scope")
        if not isinstance(granted, list) or scope not in granted:
            challenge = f'Bearer error="insufficient_scope", scope="{scope}"'
            return refuse("insufficient_scope", challenge, f"the token lacks scope {scope}")
    return None


_KNOBS = ("token_lifetime_seconds", "required", "clock_offset_seconds", "clients")


def configure(state: SimulatorState, **changes: Any) -> dict[str, Any]:
    """Change the identity server's knobs (raises ValueError on a bad one): ``token_lifetime_seconds``
    (a whole number >= 1), ``required`` ({service: scope}), ``clock_offset_seconds`` (>= 0, moves
    its clock forward), ``clients`` ({client_id: {"secret": ..., "scopes": [...]}}, replacing all)."""
    unknown = sorted(set(changes) - set(_KNOBS))
    if unknown:
        raise ValueError(f"unknown identity knobs: {', '.join(unknown)} (known: {', '.join(_KNOBS)})")
    with state.lock:
        store: IdentityState = state.service("identity")
        if "token_lifetime_seconds" in changes:
            lifetime = changes["token_lifetime_seconds"]
            if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= 86400:
                raise ValueError("token_lifetime_seconds must be a whole number of seconds within [1, 86400]")
        if "required" in changes:
            required = changes["required"]
            if not isinstance(required, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in required.items()
            ):
                raise ValueError("required must be an object {service: scope}")
        if "clock_offset_seconds" in changes:
            offset = changes["clock_offset_seconds"]
            if isinstance(offset, bool) or not isinstance(offset, int | float) or not 0 <= offset <= 10**9:
                raise ValueError("clock_offset_seconds must be a number >= 0")
        clients = None
        if "clients" in changes:
            given = changes["clients"]
            if not isinstance(given, dict):
                raise ValueError("clients must be an object {client_id: {secret, scopes}}")
            clients = {}
            for client_id, spec in given.items():
                if not isinstance(spec, dict) or not isinstance(spec.get("secret"), str):
                    raise ValueError(f"clients[{client_id!r}] needs a secret")
                scopes = spec.get("scopes", list(SCOPES))
                if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                    raise ValueError(f"clients[{client_id!r}].scopes must be a list of scopes")
                clients[str(client_id)] = IdentityClient(spec["secret"], tuple(scopes))
        if "token_lifetime_seconds" in changes:
            store.token_lifetime_seconds = changes["token_lifetime_seconds"]
        if "required" in changes:
            store.required = dict(changes["required"])
        if "clock_offset_seconds" in changes:
            store.clock_offset_seconds = float(changes["clock_offset_seconds"])
        if clients is not None:
            store.clients = clients
        return store.stats()


def issued_tokens(state: SimulatorState) -> list[str]:
    """Every token issued since the last reset (in-process only)."""
    with state.lock:
        return list(state.service("identity").tokens)


def _admin_configure(state: SimulatorState, match: re.Match[str], body: bytes) -> Reply:
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return 200, configure(state, **data), {}
    except ValueError as exc:
        return 400, {"error": str(exc)}, {}


register_route("POST", r"/connect/token", "identity", None, token, name="identity.token")
register_guard(require_token)
register_admin_route("POST", r"/_admin/identity", _admin_configure)
