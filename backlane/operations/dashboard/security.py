"""The dashboard's safety rules, as pure functions: where it may listen, who may look, what may act.

* It listens on loopback unless told otherwise; any other address needs a password
  (:func:`bind_problem`), so a dashboard is never reachable by others without a login.
* With a password set, every request needs HTTP Basic credentials, compared in constant
  time (:func:`credentials_ok`).
* Every action is a POST carrying a CSRF token that must equal the one in the browser's
  cookie (double submit, :func:`csrf_ok`); another site can make a browser send the
  cookie, but cannot read it to put it in the form. The token is bound to the login it
  was issued to (an HMAC with a key of this process), so a token planted in a cookie by
  another site or another user does not pass.
* Only requests naming an allowed host are served (:func:`host_allowed`): a page on
  another site that DNS-rebinds its own name to 127.0.0.1 reaches the dashboard with
  its own name in ``Host`` and gets nothing, not even a token. A POST whose ``Origin``
  or ``Sec-Fetch-Site`` says another site sent it is refused (:func:`cross_site`).
* A password is at least :data:`MIN_PASSWORD` characters; an empty one is not "set".
* Page text never comes from the URL: a notice after an action travels signed
  (:func:`sign_notice`), so a link cannot write its own words on the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from backlane.problems import EXIT_CONFIG, Problem
from backlane.settings import DashboardSettings

#: The cookie holding the browser's CSRF token, and the form field that must repeat it. Over
#: HTTPS the cookie is ``__Host-``-prefixed: the browser then takes it only Secure, for the
#: whole host, never set by a sibling subdomain.
CSRF_COOKIE = "backlane_csrf"
SECURE_CSRF_COOKIE = "__Host-backlane_csrf"
CSRF_FIELD = "csrf"
#: Shortest dashboard password accepted.
MIN_PASSWORD = 12
#: Key of this process's CSRF tokens and notices: a restart makes open pages reload their token.
_KEY = secrets.token_bytes(32)
#: Names that always mean this host.
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this host only."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name that could resolve anywhere, or 0.0.0.0 / :: (every interface)


def password_problem(settings: DashboardSettings) -> Problem | None:
    """Why the password set is not good enough, or None (also when none is set)."""
    if settings.password is None:
        return None
    length = len(settings.password.get_secret_value())
    if length >= MIN_PASSWORD:
        return None
    what = "empty" if length == 0 else f"{length} characters long"
    return Problem(
        f"the dashboard does not start: BACKLANE_DASHBOARD__PASSWORD is {what}; use at least {MIN_PASSWORD} "
        "characters (or unset it to serve on loopback without a login)",
        EXIT_CONFIG,
    )


def bind_problem(settings: DashboardSettings) -> Problem | None:
    """Why the dashboard must not start with these settings, or None."""
    weak = password_problem(settings)
    if weak is not None:
        return weak
    if is_loopback(settings.host) or settings.password is not None:
        return None
    return Problem(
        f"the dashboard does not start: BACKLANE_DASHBOARD__HOST is {settings.host}, reachable from other hosts, "
        "and BACKLANE_DASHBOARD__PASSWORD is not set: set a password, or listen on 127.0.0.1",
        EXIT_CONFIG,
    )


def credentials_ok(authorization: str | None, user: str, password: str) -> bool:
    """Whether an ``Authorization: Basic …`` header names ``user`` with ``password``; both compared
    in constant time, so the answer's timing tells nothing about either."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return user_ok and password_ok


def _mac(*parts: str) -> str:
    return hmac.new(_KEY, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def new_csrf_token(login: str = "") -> str:
    """A fresh token bound to ``login`` (the Authorization header, "" without a login)."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_mac('csrf', nonce, login)}"


def token_valid(token: str | None, login: str = "") -> bool:
    """Whether ``token`` was issued by this process to ``login``."""
    nonce, _, mac = (token or "").partition(".")
    return bool(nonce) and hmac.compare_digest(mac.encode(), _mac("csrf", nonce, login).encode())


def csrf_ok(cookie: str | None, submitted: str | None, login: str = "") -> bool:
    """Whether a POST's token repeats its cookie's (both present, compared in constant time)
    and was issued to this login."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode()) and token_valid(cookie, login)


#: Host names always served: this host's loopback.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(host_header: str | None) -> str | None:
    """The name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case; None
    when it is not a well-formed one."""
    text = (host_header or "").strip().lower()
    if not text or any(c in text for c in "/\\@?#% \t"):
        return None
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = text.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return None
    return name or None


def host_allowed(host_header: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Host`` names this dashboard: a loopback name or one of ``allowed``."""
    name = host_name(host_header)
    if name is None:
        return False
    return name in LOOPBACK_HOSTS or name in allowed or ("*" in allowed)


def cross_site(
    host_header: str | None, origin: str | None, fetch_site: str | None, scheme: str | None = None
) -> str | None:
    """Why a POST comes from another site, or None. A browser says where a request comes from
    (``Sec-Fetch-Site``, ``Origin``): ``Origin`` must be this request's own scheme and host
    (``scheme``: http or https as the server sees it, X-Forwarded-Proto counted only from the
    proxies uvicorn trusts). Every browser since 2020 sends ``Origin`` on a cross-origin POST,
    so a POST with neither header (curl, a script, an old browser) is not a hostile page's;
    it still needs the token, the cookie and the login."""
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site[:40]!r}"
    if origin is not None:
        if origin.strip().lower() == "null":
            return "Origin is null"
        parts = urlsplit(origin.strip())
        if parts.netloc.lower() != (host_header or "").strip().lower():
            return "Origin is another site"
        if scheme is not None and parts.scheme.lower() != scheme.lower():
            return f"Origin is {parts.scheme[:10]}, the dashboard is served over {scheme}"
    return None


def sign_notice(notice: str) -> str:
    return _mac("notice", notice)


def notice_of(notice: str | None, signature: str | None) -> str | None:
    """A notice from the URL, only when this process signed it."""
    if not notice or not signature:
        return None
    return notice if hmac.compare_digest(signature.encode(), sign_notice(notice).encode()) else None
