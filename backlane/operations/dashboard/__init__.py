"""The operators' web dashboard: a view over the operations the CLI runs.

``backlane dashboard`` serves it (:mod:`.server`); :func:`create_app` gives the ASGI app
to mount in your own. Pages: the overview (``backlane status`` with next ticks,
throughput, breakers and rate-limit holds), each pipeline (its rows by state, searchable;
failures first with their reasons; health rows with *Trigger now*), dead letters
(requeue one, selected or all; purge) and health (broker, database, workers). Safe by
default (:mod:`.security`): loopback unless a password is set, CSRF-checked POSTs, an
optional read-only mode, everything escaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(*args: Any, **kwargs: Any) -> Starlette:
    """See :func:`backlane.operations.dashboard.web.create_app` (imported on use: Starlette
    is the ``dashboard`` extra's)."""
    from backlane.operations.dashboard.web import create_app as create

    return create(*args, **kwargs)
