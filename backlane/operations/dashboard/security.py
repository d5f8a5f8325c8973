"""The dashboard's safety rules, as pure functions: where it may listen, who may look, what may act.

* It listens on loopback unless told otherwise; any other address needs a password
  (:func:`bind_problem`), so a dashboard is never reachable by others without a login.
* With a password set, every request needs HTTP Basic credentials, compared in constant
  time (:func:`credentials_ok`).
* Every action is a POST carrying a CSRF token that must equal the one in the browser's
  cookie (double submit, :func:`csrf_ok`); another site can make a browser send the
  cookie, but cannot read it to put it in the form.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets

from backlane.problems import EXIT_CONFIG, Problem
from backlane.settings import DashboardSettings

#: The cookie holding the browser's CSRF token, and the form field that must repeat it.
CSRF_COOKIE = "backlane_csrf"
CSRF_FIELD = "csrf"
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


def bind_problem(settings: DashboardSettings) -> Problem | None:
    """Why the dashboard must not start with these settings, or None."""
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


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    """Whether a POST's token repeats its cookie's (both present, compared in constant time)."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
