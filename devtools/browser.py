"""Debian's Chromium driven by Playwright, for the dashboard's browser tests and screenshots.

Playwright's own browser downloads are never used (``playwright install`` needs its CDN):
``scripts/bootstrap --with-chromium`` installs the ``chromium`` package, and a missing one
is a failure that names that fix, never a skip.
"""

from __future__ import annotations

import os
from typing import Any

#: Where Debian's ``chromium`` package puts the browser.
CHROMIUM = "/usr/bin/chromium"
#: Headless in a container: no sandbox (root), no GPU, and nothing that calls Google's servers.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class MissingChromium(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            f"no Chromium at {CHROMIUM}: run scripts/bootstrap --with-chromium "
            "(or, as root: apt-get update && apt-get install -y chromium)"
        )


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from ``sync_playwright()``; :class:`MissingChromium` when absent."""
    if not os.access(CHROMIUM, os.X_OK):
        raise MissingChromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
