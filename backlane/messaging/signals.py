"""Middleware signals, called the way Dramatiq calls them but only where a middleware has a hook,
and every message published with options signed as its last step before it is encoded.

Dramatiq's ``Broker.emit_before`` / ``emit_after`` call every middleware for every signal: a
message's half a dozen signals times each middleware, most of them ``Middleware``'s own empty
methods. :class:`Signals` calls only the overridden hooks, in Dramatiq's order (``after_`` in
reverse) and with its error handling (a ``MiddlewareError`` of a ``before_`` hook is raised, any
other failure logged as critical). The list is rebuilt whenever the middleware list changed (added
to, or edited in place as some tests do). tests/unit/test_pinned_internals.py holds this copy to
Dramatiq's own.

Signing (:mod:`backlane.messaging.signing`) runs after every ``before_enqueue`` hook: every publish
path (enqueue with or without delay, enqueue_many) encodes the message right after it, so the
options are final, and Dramatiq's delay copy is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dramatiq.broker import Broker
from dramatiq.middleware import Middleware, MiddlewareError

from backlane.messaging import signing


class Signals:
    """The hooks of ``broker``'s middleware, by signal."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._hooks: dict[str, list[Any]] = {}
        self._hooks_of: list[Middleware] = []

    def _hooks_for(self, name: str, order: Iterable[Middleware]) -> list[Any]:
        middleware = self.broker.middleware
        if middleware != self._hooks_of:
            self._hooks, self._hooks_of = {}, list(middleware)
        default = getattr(Middleware, name, None)
        hooks = [getattr(m, name) for m in order if default is None or getattr(type(m), name, None) is not default]
        self._hooks[name] = hooks
        return hooks

    def before(self, signal: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        broker = self.broker
        name = "before_" + signal
        hooks = self._hooks.get(name) if broker.middleware == self._hooks_of else None
        for hook in hooks if hooks is not None else self._hooks_for(name, broker.middleware):
            try:
                hook(broker, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                broker.logger.critical("Unexpected failure in %s of %r.", name, hook.__self__, exc_info=True)
        if signal == "enqueue" and args and isinstance(getattr(args[0], "options", None), dict):
            signing.sign_message(broker, args[0])

    def after(self, signal: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        broker = self.broker
        name = "after_" + signal
        hooks = self._hooks.get(name) if broker.middleware == self._hooks_of else None
        for hook in hooks if hooks is not None else self._hooks_for(name, reversed(broker.middleware)):
            try:
                hook(broker, *args, **kwargs)
            except Exception:
                broker.logger.critical("Unexpected failure in %s of %r.", name, hook.__self__, exc_info=True)
