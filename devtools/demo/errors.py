"""The demo's one error: it cannot go on, and says why in one line."""

from __future__ import annotations

from backlane.errors import BacklaneError


class DemoError(BacklaneError):
    """The demo cannot go on; the reason is one line saying why and what to do (exit status 1)."""

    kind = "demo"
